"""Optimizers on a test problem from the same start: trajectories and distances to the minimum.

An optimizer is named as in configs (`adam`, `sam`, `muon`, ...) or by an alias (`momentum`:
SGD with heavy-ball 0.9, `nesterov`: SGD with Nesterov 0.9), optionally with a learning rate
(`adam@0.05`). Without one the learning rate is tuned: a grid of half-decades from 1e-4 to 1,
each optimizer taking the rate with the smallest final distance to the minimizer (a
diverged run counts as infinitely far) -- every method on its best footing. Problems are in
float64 and Muon uses the exact polar factor (SVD), so methods are compared, not rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from losslab.optim.muon import Muon
from losslab.optim.registry import OPTIMIZERS
from losslab.optimize.functions import Problem

ALIASES = {"momentum": ("sgd", {"momentum": 0.9}), "nesterov": ("sgd", {"momentum": 0.9, "nesterov": True})}
LR_GRID = [10 ** (e / 2) for e in range(-8, 1)]  # 1e-4 .. 1
# beyond the learning rate, the settings that make each method itself on a tiny problem
EXTRA = {"muon": {"orthogonalization": "svd", "weight_decay": 0.0}, "sam": {"rho": 0.01},
         "svrg": {"snapshot_every": 10}}


@dataclass
class Trajectory:
    optimizer: str
    lr: float
    points: torch.Tensor  # (steps + 1, rows, cols)
    values: torch.Tensor  # f at each point
    distances: torch.Tensor  # ||x_t - x*||
    grad_evals_per_step: float = 1.0  # gradients per step (SAM: 2)

    @property
    def diverged(self) -> bool:
        return not bool(torch.isfinite(self.values[-1]))

    def steps_to(self, tolerance: float) -> int | None:
        """First step with distance to the minimizer <= tolerance (None: never)."""
        hits = (self.distances <= tolerance).nonzero()
        return int(hits[0]) if len(hits) else None

    def summary(self, tolerance: float) -> dict:
        return {"optimizer": self.optimizer, "lr": self.lr, "final_value": float(self.values[-1]),
                "final_distance": float(self.distances[-1]), "steps_to_tolerance": self.steps_to(tolerance),
                "diverged": self.diverged}


def parse_spec(spec: str) -> tuple[str, str, dict, float | None]:
    """'adam@0.05' -> (label 'adam', registry name, extra kwargs, lr or None)."""
    label, _, lr = spec.partition("@")
    name, extra = ALIASES.get(label, (label, {}))
    if name not in OPTIMIZERS:
        known = ", ".join(sorted({*OPTIMIZERS, *ALIASES}))
        raise ValueError(f"unknown optimizer {label!r} (known: {known})")
    try:
        rate = float(lr) if lr else None
    except ValueError:
        raise ValueError(f"{spec!r}: the learning rate after @ must be a number") from None
    if rate is not None and not rate > 0:
        raise ValueError(f"{spec!r}: the learning rate must be > 0")
    return label, name, {**EXTRA.get(name, {}), **extra}, rate


def _optimizer(name: str, groups: list[dict], kwargs: dict) -> torch.optim.Optimizer:
    if hasattr(OPTIMIZERS[name], "for_model"):  # the Muon hybrid: every parameter here is a matrix for Muon
        return Muon(groups, **{k: v for k, v in kwargs.items() if not k.startswith("adamw_")})
    return OPTIMIZERS[name](groups, **kwargs)


def trajectories(problem: Problem, label: str, name: str, kwargs: dict, rates: list[float],
                 steps: int) -> list[Trajectory]:
    """One trajectory per learning rate, all stepped together: one parameter group per rate."""
    points = nn.ParameterList(nn.Parameter(problem.start.clone()) for _ in rates)
    opt = _optimizer(name, [{"params": [p], "lr": lr} for p, lr in zip(points, rates)], kwargs)
    switches = callable(getattr(opt, "eval", None))  # schedule-free: it evaluates at other weights
    if switches:
        opt.train()

    calls = 0

    def closure(full: bool = False):  # deterministic problems: the batch is the whole problem
        nonlocal calls
        calls += 1
        opt.zero_grad()
        total = problem.f(torch.stack(list(points))).sum()
        total.backward()
        return total

    def snapshot() -> torch.Tensor:
        if switches:
            opt.eval()
        now = torch.stack([p.detach().clone() for p in points])
        if switches:
            opt.train()
        return now
    path = [snapshot()]
    for _ in range(steps):
        closure()
        opt.step(closure) if getattr(opt, "needs_closure", False) else opt.step()
        path.append(snapshot())
    pts = torch.stack(path, dim=1).nan_to_num(math.inf, math.inf, -math.inf)  # (rates, steps + 1, rows, cols)
    out = []
    for lr, p in zip(rates, pts):
        with torch.no_grad():
            values = problem.f(p).nan_to_num(math.inf)
        distances = (p - problem.minimizer).flatten(1).norm(dim=1).nan_to_num(math.inf)
        out.append(Trajectory(label, lr, p, values, distances, calls / max(steps, 1)))
    return out


def run(problem: Problem, specs: list[str], steps: int) -> list[Trajectory]:
    """One trajectory per optimizer spec; learning rates tuned on LR_GRID where not given."""
    out = []
    for spec in specs:
        label, name, kwargs, lr = parse_spec(spec)
        runs = trajectories(problem, label, name, kwargs, [lr] if lr is not None else LR_GRID, steps)
        out.append(min(runs, key=lambda t: (float(t.distances[-1]), t.lr)))
    return out
