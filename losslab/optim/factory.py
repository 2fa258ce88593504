"""Optimizer and schedule built from the config: `build_optimizer(cfg, model)`. The optimizers lie
below the config (which checks their names and arguments against the registry): the config's
types are read here only by annotation."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from losslab.core.errors import LossLabError
from losslab.optim.registry import accepted_arguments, base_of, construct
from losslab.optim.schedules import lr_lambda

if TYPE_CHECKING:
    from losslab.config import OptimConfig


def build_optimizer(cfg: OptimConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    kwargs = cfg.kwargs
    if cfg.reference and "orthogonalization" in accepted_arguments(cfg.name, base_of(cfg.name, kwargs)):
        kwargs["orthogonalization"] = "svd"
    try:
        return construct(cfg.name, model, kwargs)
    except (ValueError, TypeError) as e:
        raise LossLabError(f"config optim: {cfg.name} refused its arguments: {e}") from None


def build_scheduler(cfg: OptimConfig, optimizer: torch.optim.Optimizer, total_steps: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.schedule, total_steps))
