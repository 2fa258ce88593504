"""K runs of the same shapes trained together: one forward and backward pass for all of them
through torch.func.vmap over stacked parameters.

Each run keeps its own Trainer (its run driver: events, stop rules, checkpoints, run folder) and
training step (its data and minibatch order, optimizer and schedule): the gradients are computed
jointly, and each run's own torch optimizer steps its parameters, which are views into the stack.
So a run trained in a group is the run trained alone, bit for bit on a CPU (tested): a vmapped
gradient equals each run's own, and the optimizer's arithmetic is torch's. (A step written on the
stacks, as this module once took for Adam, rounds differently: one ulp at the first step grew into
another grokking time.) Evaluations stay per run: on a CPU a vmapped forward pass over whole data
sets measured slower than K plain ones. Small models gain most: their steps are dominated by
per-call overhead, paid here once for K models' forward and backward.
"""

from __future__ import annotations

import ctypes
import json
import time

import torch
from torch import nn
from torch.func import functional_call, vmap

from losslab.config import RunConfig
from losslab.optim.factory import build_optimizer, build_scheduler
from losslab.optim.registry import OPTIMIZERS, WRAPPERS
from losslab.train.loop import Trainer, training


def batch_key(cfg: RunConfig) -> str | None:
    """Runs with the same key can train together; None: this run trains alone (its optimizer
    needs extra gradients or moves the weights to evaluate, its probes read the optimizer, or
    it has an L1 penalty, which the joint pass leaves out)."""
    entry = OPTIMIZERS[cfg.optim.name]
    if cfg.optim.name in WRAPPERS and getattr(WRAPPERS[cfg.optim.name][0], "needs_closure", True):
        return None
    if cfg.optim.name.startswith("schedulefree") or cfg.probes.every or hasattr(entry, "for_model") or cfg.optim.l1:
        return None
    return json.dumps([cfg.task.model_dump(mode="json"), cfg.model.model_dump(mode="json"), cfg.loss,
                       cfg.train.batch_size, str(cfg.dtype), cfg.train.device])


def _keep_freed_memory() -> None:
    """Have glibc keep freed memory for reuse. By default it hands each freed block over 32 MB
    back to the OS, and a group's intermediates (K times a run's) then page-fault anew at every
    step: half the time of a batched step of 8 grokking transformers on a CPU, measured. Other
    C libraries: nothing done."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's mallopt parameters
    libc.mallopt(m_mmap_threshold, 1 << 30)
    libc.mallopt(m_trim_threshold, (1 << 31) - 1)


def _share(model: nn.Module, name: str, storage: torch.Tensor) -> None:
    """Make the parameter `name` of `model` a Parameter over `storage` (no copy)."""
    owner, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(owner), leaf, nn.Parameter(storage))


class OwnTime:
    """A run's clock in a group: the seconds charged to it (its own work, its share of the rest)."""

    def __init__(self):
        self.seconds = 0.0

    def __call__(self) -> float:
        return self.seconds


class BatchedTrainers:
    def __init__(self, trainers: list[Trainer]):
        _keep_freed_memory()
        self.trainers = trainers
        self.clocks = [OwnTime() for _ in trainers]
        for t, clock in zip(trainers, self.clocks):
            t.record.clock = clock
        self.steps = [t.stepper for t in trainers]
        self.base = self.steps[0].model
        self.names = [n for n, _ in self.base.named_parameters()]
        self.stack = {n: torch.stack([s.model.get_parameter(n).detach() for s in self.steps]).requires_grad_()
                      for n in self.names}
        for k, s in enumerate(self.steps):
            for n in self.names:
                _share(s.model, n, self.stack[n].data[k])
            # the optimizer and schedule again over the shared parameters, with the state they had
            # (a resumed run's moments and step counts)
            optimizer = build_optimizer(s.cfg.optim, s.model)
            optimizer.load_state_dict(s.optimizer.state_dict())
            scheduler = build_scheduler(s.cfg.optim, optimizer, s.cfg.train.max_steps)
            scheduler.load_state_dict(s.scheduler.state_dict())
            s.optimizer, s.scheduler = optimizer, scheduler
        # each run's parameters in the stack's order, looked up once (get_parameter is slow per step)
        self.params = [[s.model.get_parameter(n) for n in self.names] for s in self.steps]
        buffers = dict(self.base.named_buffers())
        loss_fn = self.steps[0].loss_fn

        def loss_of(params, x, y):
            return loss_fn(functional_call(self.base, (params, buffers), (x,)), y)
        self.losses = vmap(loss_of)

    def _step(self, active: list[int]) -> None:
        """One training step of the runs `active` (indices into the stack)."""
        batches = {k: self.steps[k].batch(self.steps[k].step) for k in active}
        # runs at different steps (resumed from different checkpoints) may be at an epoch's short
        # last minibatch: one pass per batch size
        by_size: dict[int, list[int]] = {}
        for k in active:
            by_size.setdefault(len(batches[k][0]), []).append(k)
        for group in by_size.values():
            self._step_group(group, [batches[k] for k in group])

    def _step_group(self, group: list[int], batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        started = time.perf_counter()
        xs, ys = torch.stack([b[0] for b in batches]), torch.stack([b[1] for b in batches])
        every = len(group) == len(self.trainers)
        params = self.stack if every else {n: s[group] for n, s in self.stack.items()}
        losses = self.losses(params, xs, ys)
        for s in self.stack.values():
            s.grad = None
        losses.sum().backward()  # the runs' losses are independent: each gets its own gradient
        share = (time.perf_counter() - started) / len(group)
        grads = [self.stack[n].grad for n in self.names]
        for k, (x, y), loss in zip(group, batches, losses):
            started = time.perf_counter()
            s = self.steps[k]
            for p, g in zip(self.params[k], grads):
                p.grad = g[k]
            s.clip_gradient()
            s.apply_gradient(loss, x, y)
            self.clocks[k].seconds += share + time.perf_counter() - started

    def run(self) -> list[dict]:
        """Train every run to its end; returns their summaries."""
        started = time.perf_counter()
        with training(self.trainers):
            active = list(range(len(self.trainers)))
            while active:
                for k in list(active):
                    polled = time.perf_counter()
                    if ended := self.trainers[k].poll():
                        self.trainers[k].end(*ended)
                        active.remove(k)
                    self.clocks[k].seconds += time.perf_counter() - polled
                if active:
                    self._step(active)
        group = {"runs": len(self.trainers), "wall_s": round(time.perf_counter() - started, 3)}
        for t in self.trainers:  # wall_s is each run's share; this, the group it was trained in
            t.summary["group"] = group
        return [t.summary for t in self.trainers]
