"""Learning-rate multipliers as pure functions of the step, so that a resumed run is exact."""

from __future__ import annotations

import math
from functools import partial
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from losslab.config import ScheduleConfig


def _decay(cfg: ScheduleConfig, total_steps: int, step: int) -> float:
    """The multiplier after warmup, `step` counted from the end of warmup."""
    if cfg.name == "cosine":
        span = max(total_steps - cfg.warmup_steps, 1)
        progress = min(step / span, 1.0)
        return cfg.min_ratio + (1 - cfg.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.name == "exponential":
        return cfg.gamma**step
    if cfg.name == "step":
        return cfg.gamma ** (step // cfg.step_size)
    return 1.0


def multiplier(cfg: ScheduleConfig, total_steps: int, step: int) -> float:
    """lr(step) / peak lr: linear warmup from 1/warmup to 1, then the decay."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    return _decay(cfg, total_steps, step - cfg.warmup_steps)


def lr_lambda(cfg: ScheduleConfig, total_steps: int):
    """A picklable step -> multiplier function for torch.optim.lr_scheduler.LambdaLR."""
    return partial(multiplier, cfg, total_steps)
