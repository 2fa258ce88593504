"""A run's training step: what is computed (its model, optimizer and schedule, the minibatch, the
loss and its gradient, the metrics at theta_t), with nothing of run folders, cadences, events or
signals (the run driver around it, losslab.train.loop, decides when to evaluate, checkpoint and
stop; the batched trainer drives K of them with one joint gradient).

The step is a pure function of its state: the minibatch order of each epoch is drawn from
(seed, epoch), and the schedule is a function of the step, so a step restored from a state
continues bit for bit. No host sync: the losses of the first `train.record_loss_steps` steps are
kept on the device until the driver reads them.
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn

from losslab.config import RunConfig
from losslab.losses import Loss, build_loss
from losslab.models import build_model
from losslab.optim.factory import build_optimizer, build_scheduler
from losslab.optim.svrg import SVRG, gradient_variance
from losslab.store.records import MetricRow
from losslab.tasks import Task


def build_run_model(cfg: RunConfig, device: torch.device | None = None) -> tuple[nn.Module, Task, Loss]:
    """The run's model (as initialized, from its seed), task and loss, in the run's dtype, on `device`."""
    task = cfg.task.build(cfg.task_seed)
    loss_fn = build_loss(cfg.loss, task.n_classes)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, task, loss_fn.n_outputs).to(device=device, dtype=cfg.dtype)
    return model, task.to(cfg.dtype, device), loss_fn


def _cloned(tree):
    """A state dict with each tensor copied out of the storage it may view, onto the CPU (a
    checkpoint is device-free: a run resumes on another device)."""
    if isinstance(tree, torch.Tensor):
        return tree.clone() if tree.device.type == "cpu" else tree.cpu()
    if isinstance(tree, dict):
        return {k: _cloned(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(_cloned(v) for v in tree)
    return tree


class TrainingStep:
    def __init__(self, cfg: RunConfig, device: torch.device):
        self.cfg, self.device = cfg, device
        self.model, self.task, self.loss_fn = build_run_model(cfg, device)
        self.optimizer = build_optimizer(cfg.optim, self.model)
        # schedule-free optimizers evaluate at other weights than they differentiate at
        self.switches_weights = callable(getattr(self.optimizer, "eval", None))
        self.scheduler = build_scheduler(cfg.optim, self.optimizer, cfg.train.max_steps)
        n = len(self.task.x_train)
        self.batch_size = min(cfg.train.batch_size or n, n)
        self.full_batch = self.batch_size == n
        self.batches_per_epoch = math.ceil(n / self.batch_size)
        self.step = 0
        self.grad_evals = 0.0  # gradient computations, in full passes over the training set
        self._epoch_order: tuple[int, torch.Tensor] | None = None
        self._losses: list[tuple[int, torch.Tensor]] = []  # the first steps' losses, on the device

    # ------------------------------------------------------------ state

    def state(self) -> dict:
        # cloned: a batched run's parameters and optimizer state are views into its group's
        # stacks, which torch.save would write whole
        return {"step": self.step, "model": _cloned(self.model.state_dict()),
                "optimizer": _cloned(self.optimizer.state_dict()), "scheduler": self.scheduler.state_dict(),
                "grad_evals": self.grad_evals}

    def load_state(self, state: dict) -> None:
        """Raises what torch raises for a state of another model or optimizer."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.grad_evals = state["step"], state["grad_evals"]

    # ------------------------------------------------------------ the step

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The minibatch of `step` (the whole training set in full-batch training)."""
        x, y = self.task.x_train, self.task.y_train
        if self.full_batch:
            return x, y
        epoch, i = divmod(step, self.batches_per_epoch)
        if self._epoch_order is None or self._epoch_order[0] != epoch:
            g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
            self._epoch_order = (epoch, torch.randperm(len(x), generator=g).to(self.device))
        idx = self._epoch_order[1][i * self.batch_size: (i + 1) * self.batch_size]
        return x[idx], y[idx]

    def forward(self, x: torch.Tensor) -> torch.Tensor | None:
        """The step's forward pass, made before the driver evaluates so that full-batch training
        measures theta_t on it; None where the optimizer moves the weights to evaluate
        (schedule-free: the forward is made after)."""
        return None if self.switches_weights else self.model(x)

    def update(self, x: torch.Tensor, y: torch.Tensor, out: torch.Tensor | None = None) -> None:
        """theta_step -> theta_step+1 on the batch (x, y); `out` is the forward pass if made already."""
        loss = self.loss_fn(self.model(x) if out is None else out, y)
        self.optimizer.zero_grad(set_to_none=True)
        self._backward(loss)
        self.apply_gradient(loss, x, y)

    def take(self) -> None:
        """One step from the current state, exactly as the driver takes it (no evaluation)."""
        if self.switches_weights:
            self.optimizer.train()
        self.update(*self.batch(self.step))

    def _backward(self, loss: torch.Tensor) -> None:
        """The gradient of the training objective: the loss, plus the L1 penalty if any."""
        if self.cfg.optim.l1:
            loss = loss + self.cfg.optim.l1 * sum(p.abs().sum() for p in self.model.parameters() if p.ndim >= 2)
        loss.backward()
        self.clip_gradient()

    def clip_gradient(self) -> None:
        if self.cfg.optim.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.clip_grad_norm)

    def _gradient(self, x: torch.Tensor, y: torch.Tensor, full: bool = False) -> torch.Tensor:
        """The closure of wrapped optimizers: the gradient at the current weights, of this
        minibatch or (full=True) of the whole training set, left in p.grad."""
        if full:
            x, y = self.task.x_train, self.task.y_train
        self.grad_evals += len(x) / len(self.task.x_train)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model(x), y)
        self._backward(loss)
        return loss

    def apply_gradient(self, loss: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> None:
        """The step from the (clipped) gradient of `loss` on the batch (x, y), now in p.grad: the
        optimizer (given a closure where it needs more gradients), the schedule, the counters."""
        self.count(loss, x)
        if getattr(self.optimizer, "needs_closure", False):  # SAM, SVRG: more gradients per step
            self.optimizer.step(partial(self._gradient, x, y))
        else:
            self.optimizer.step()
        self.advance()

    def count(self, loss: torch.Tensor, x: torch.Tensor) -> None:
        """Before a step on the batch x: its loss (early steps) and its gradient evaluations."""
        if self.step < self.cfg.train.record_loss_steps:
            self._losses.append((self.step, loss.detach()))
        self.grad_evals += len(x) / len(self.task.x_train)

    def advance(self) -> None:
        """After the optimizer's step: the schedule's."""
        self.scheduler.step()
        self.step += 1

    def recorded_losses(self) -> list[MetricRow]:
        """The losses kept since the last call, as metric rows (the host reads them here, at once)."""
        if not self._losses:
            return []
        steps, losses = zip(*self._losses)
        self._losses = []
        return [MetricRow(s, "train", "step_loss", v) for s, v in zip(steps, torch.stack(losses).tolist())]

    def switch_weight_decay(self, value: float) -> None:
        """From this step on, weight decay `value` (the state dict carries it across a resume)."""
        for group in self.optimizer.param_groups:  # wrappers and the Muon hybrid share their parts' groups
            if "weight_decay" in group:
                group["weight_decay"] = value

    # ------------------------------------------------------------ metrics at theta_t

    @torch.no_grad()
    def _measure(self, x, y, out=None) -> tuple[float, float]:
        out = self.model(x) if out is None else out.detach()
        return self.loss_fn(out, y).item(), self.loss_fn.accuracy(out, y).item()

    @torch.no_grad()
    def _group_losses(self, out: torch.Tensor | None) -> list[MetricRow]:
        """Training loss of each class-frequency group (heavy-tailed tasks)."""
        t = self.task
        out = self.model(t.x_train) if out is None else out.detach()
        group_of = t.class_groups[t.y_train]
        return [MetricRow(self.step, "train", f"loss_group{g}",
                          self.loss_fn(out[mask], t.y_train[mask]).item())
                for g in range(int(t.class_groups.max()) + 1) if (mask := group_of == g).any()]

    def evaluate(self, out: torch.Tensor | None = None) -> tuple[dict[str, float], list[MetricRow]]:
        """Metrics at theta_step ({train_loss, train_acc, val_loss, val_acc}) and their metric rows;
        `out`, the step's forward pass, is reused in full-batch training."""
        t, step = self.task, self.step
        if self.switches_weights:
            self.optimizer.eval()
        reuse = out if self.full_batch else None
        train_loss, train_acc = self._measure(t.x_train, t.y_train, reuse)
        val_loss, val_acc = self._measure(t.x_val, t.y_val)
        rows = [MetricRow(step, "train", "loss", train_loss), MetricRow(step, "train", "acc", train_acc),
                MetricRow(step, "val", "loss", val_loss), MetricRow(step, "val", "acc", val_acc)]
        if t.class_groups is not None:
            rows += self._group_losses(reuse)
        if self.switches_weights:
            self.optimizer.train()
        if isinstance(self.optimizer, SVRG) and not self.full_batch:
            rows += self._gradient_variance()
        return {"train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss, "val_acc": val_acc}, rows

    def _gradient_variance(self) -> list[MetricRow]:
        """Defazio & Bottou's measure at theta_step: var(SGD gradient), var(SVRG gradient), their ratio."""
        names = {p: n for n, p in self.model.named_parameters()}
        snapshot = {names[p]: w for p, w in self.optimizer.snapshot().items()}
        if len(snapshot) < len(names):
            return []  # no snapshot before the first step
        t, step = self.task, self.step
        rows = []
        for name, (sgd, svrg) in gradient_variance(self.model, self.loss_fn, t.x_train, t.y_train,
                                                   self.batch_size, snapshot, seed=step).items():
            rows += [MetricRow(step, "probe", f"grad_var_sgd/{name}", sgd),
                     MetricRow(step, "probe", f"grad_var_svrg/{name}", svrg),
                     MetricRow(step, "probe", f"grad_var_ratio/{name}", sgd / svrg if svrg > 0 else math.inf)]
        return rows
