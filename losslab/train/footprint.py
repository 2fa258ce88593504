"""The memory a run needs at least, known from its config before anything is allocated: its
data, and its parameters with their gradients and two optimizer moments (the model is built
on the meta device, which allocates nothing)."""

from __future__ import annotations

import torch

from losslab.config import RunConfig
from losslab.core.memory import check_fits
from losslab.losses import build_loss
from losslab.models import build_model
from losslab.tasks import Task

COPIES = 4  # weights, gradients, two optimizer moments


def parameter_count(cfg: RunConfig) -> int:
    examples, width, vocab, classes = cfg.task.shape()
    x = torch.empty(1, width, device="meta", dtype=torch.long if vocab else torch.float32)
    y = torch.empty(1, device="meta", dtype=torch.long)
    with torch.device("meta"):
        model = build_model(cfg.model, Task(x, y, x, y, classes, vocab), build_loss(cfg.loss, classes).n_outputs)
    return sum(p.numel() for p in model.parameters())


def check_run_fits(cfg: RunConfig) -> None:
    """Refuse a run whose data and parameters alone exceed the memory available."""
    examples, width, _, _ = cfg.task.shape()
    params = parameter_count(cfg)
    itemsize = cfg.dtype.itemsize
    check_fits(examples * width * 8 + params * itemsize * COPIES,
               f"run {cfg.name} ({params:,} parameters, {examples:,} examples of {width:,} values)")
