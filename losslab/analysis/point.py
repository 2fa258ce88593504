"""A model at one stored checkpoint of a run, with its data and loss: what every analysis takes.

The model is rebuilt from the run's config and the checkpoint's weights (loaded with
weights_only=True); analyses work on this copy, so nothing they do touches the run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call

from losslab.config import RunConfig
from losslab.errors import LossLabError
from losslab.losses import Loss, build_loss
from losslab.models import build_model
from losslab.store import RunDir
from losslab.tasks import Task, build_task

_STEP_NAME = re.compile(r"step_(\d+)\.pt$")


def checkpoint_paths(run: RunDir) -> dict[int, Path]:
    """Stored checkpoints by step (named step_*.pt; a rolling last.pt counts at its own step)."""
    found = {int(m.group(1)): p for p in run.checkpoints() if (m := _STEP_NAME.search(p.name))}
    last = run.checkpoint_dir / "last.pt"
    if last.exists():
        found.setdefault(run.load_checkpoint(last)["step"], last)
    return dict(sorted(found.items()))


@dataclass
class Point:
    run: RunDir
    cfg: RunConfig
    step: int
    model: nn.Module
    task: Task
    loss_fn: Loss

    @property
    def params(self) -> dict[str, torch.Tensor]:
        return {n: p.detach() for n, p in self.model.named_parameters()}

    def data(self, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
        if split == "train":
            return self.task.x_train, self.task.y_train
        if split == "val":
            return self.task.x_val, self.task.y_val
        raise LossLabError(f"unknown split {split!r} (train or val)")

    def loss(self, params: dict[str, torch.Tensor], split: str = "train") -> torch.Tensor:
        x, y = self.data(split)
        return self.loss_fn(functional_call(self.model, params, (x,)), y)


def flatten(params: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([p.flatten() for p in params.values()])


def unflatten(flat: torch.Tensor, like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The flat vector cut into tensors of `like`'s names, shapes and dtypes."""
    out, at = {}, 0
    for name, w in like.items():
        out[name] = flat[at: at + w.numel()].view(w.shape).to(w.dtype)
        at += w.numel()
    return out


def build_point(cfg: RunConfig) -> tuple[nn.Module, Task, Loss]:
    """The run's model (as initialized, from its seed), task and loss."""
    task = build_task(cfg.task, cfg.task_seed)
    loss_fn = build_loss(cfg.loss, task.n_classes)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, task, loss_fn.n_outputs)
    if cfg.optim.reference:
        model.double()
        task = task.to(torch.float64)
    return model, task, loss_fn


def load_point(run: RunDir, step: int | None = None) -> Point:
    """The run at checkpoint `step` (default: its last one)."""
    paths = checkpoint_paths(run)
    if not paths:
        raise LossLabError(f"run {run.path.name} has no checkpoint")
    if step is None:
        step = max(paths)
    if step not in paths:
        raise LossLabError(f"run {run.path.name} has no checkpoint at step {step} "
                           f"(it has: {', '.join(map(str, paths))})")
    cfg = run.config()
    model, task, loss_fn = build_point(cfg)
    try:
        model.load_state_dict(run.load_checkpoint(paths[step])["model"])
    except (RuntimeError, KeyError) as e:
        raise LossLabError(f"run {run.path.name}: checkpoint {paths[step].name} does not fit its config "
                           f"({str(e).splitlines()[0]})") from None
    model.eval()
    return Point(run, cfg, step, model, task, loss_fn)
