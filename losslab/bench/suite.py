"""Optimizer benchmark suites under AlgoPerf's external-tuning rule.

A workload is a training run (a config, trained through the store, whose target is a
validation accuracy: the run stops at t4 with `events.generalized` = target) or a test
problem (target: distance to the minimizer). For every optimizer and every study (an
independent seed), a few trials draw hyperparameters quasi-randomly (scrambled Sobol points
over the optimizer's search space, log scale) and the fastest trial to reach the target
counts. Time is measured two ways: training seconds (evaluation excluded, as in AlgoPerf)
and gradient evaluations (passes over the training set: SAM pays two per step).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from losslab.config import load_config
from losslab.core.errors import LossLabError
from losslab.optimize.functions import problem
from losslab.optimize.run import ALIASES, parse_spec, trajectories
from losslab.store import RunStore
from losslab.train.loop import train


@dataclass(frozen=True)
class Workload:
    name: str
    target: float  # validation accuracy (runs) or distance to the minimizer (test problems)
    max_steps: int
    config: dict | None = None  # a RunConfig as a dict, or
    function: str | None = None  # the name of a test problem
    overrides: list[str] = field(default_factory=list)


def _run(name: str, preset_or_dict, *overrides: str) -> dict:
    cfg = load_config(preset_or_dict, list(overrides)).model_dump(mode="json", exclude_none=True)
    cfg["name"] = name
    return cfg


WORKLOADS: dict[str, Callable[[], Workload]] = {
    "rosenbrock": lambda: Workload("rosenbrock", 1e-2, 3000, function="rosenbrock"),
    "logreg": lambda: Workload("logreg", 1e-4, 1000, function="logreg"),
    "digits-mlp": lambda: Workload("digits-mlp", 0.95, 600, _run("digits-mlp", {
        "task": {"name": "digits"}, "model": {"name": "mlp", "depth": 2, "width": 128, "out_bias": True},
        "train": {"batch_size": 128, "eval_every": 11}})),  # 11 minibatches: one epoch
    "parity": lambda: Workload("parity", 1.0, 3000, _run("parity", "parity")),
    "grokking": lambda: Workload("grokking", 0.99, 3000, _run("grokking-small", "grokking", "task.p=31",
                                                                "task.train_fraction=0.7", "train.eval_every=50")),
}
SUITES = {
    "quick": ["rosenbrock", "logreg", "digits-mlp"],
    "default": ["rosenbrock", "logreg", "digits-mlp", "parity", "grokking"],
}
# search spaces: argument -> (low, high), sampled log-uniformly
SEARCH: dict[str, dict[str, tuple[float, float]]] = {
    "sgd": {"lr": (1e-3, 1.0)}, "momentum": {"lr": (1e-4, 0.3)}, "nesterov": {"lr": (1e-4, 0.3)},
    "svrg": {"lr": (1e-3, 1.0)}, "schedulefree_sgd": {"lr": (1e-3, 1.0)}, "adagrad": {"lr": (1e-3, 1.0)},
    "adadelta": {"lr": (0.1, 10.0)}, "rmsprop": {"lr": (1e-5, 1e-2)}, "rprop": {"lr": (1e-4, 0.1)},
    "sam": {"lr": (1e-3, 1.0), "rho": (0.01, 0.2)}, "shampoo": {"lr": (1e-3, 1.0)},
    "muon": {"lr": (1e-3, 0.1), "adamw_lr": (1e-4, 3e-2)},
}
ADAPTIVE_SPACE = {"lr": (1e-4, 3e-2)}  # adam, adamw, adamax, nadam, radam, schedulefree_adamw


def trial_points(optimizer: str, trials: int, seed: int) -> list[dict[str, float]]:
    space = SEARCH.get(optimizer, ADAPTIVE_SPACE)
    sobol = torch.quasirandom.SobolEngine(len(space), scramble=True, seed=seed).draw(trials, dtype=torch.float64)
    return [{k: lo * (hi / lo) ** float(u) for (k, (lo, hi)), u in zip(space.items(), row)} for row in sobol]


@dataclass
class Trial:
    workload: str
    optimizer: str
    study: int
    hyperparameters: dict
    seconds: float  # to target (inf: missed)
    grad_evals: float
    run_id: str | None = None
    error: str | None = None  # why the trial could not run (e.g. Muon on a model without hidden matrices)


def _optimizer_overrides(optimizer: str, hp: dict) -> list[str]:
    name, extra = ALIASES.get(optimizer, (optimizer, {}))
    values = {**extra, **hp}
    return [f"optim.name={name}", *(f"optim.{k}={str(v).lower() if isinstance(v, bool) else v}"
                                    for k, v in values.items())]


def run_trial(w: Workload, optimizer: str, study: int, hp: dict, store: RunStore) -> Trial:
    if w.function:
        _, name, kwargs, _ = parse_spec(optimizer)
        kwargs.update({k: v for k, v in hp.items() if k != "lr"})
        started = time.perf_counter()
        (t,) = trajectories(problem(w.function), optimizer, name, kwargs, [hp["lr"]], w.max_steps)
        per_step = (time.perf_counter() - started) / w.max_steps
        steps = t.steps_to(w.target)
        if steps is None:
            return Trial(w.name, optimizer, study, hp, math.inf, math.inf)
        return Trial(w.name, optimizer, study, hp, steps * per_step, steps * t.grad_evals_per_step)
    overrides = [*_optimizer_overrides(optimizer, hp), f"seed={study}", f"train.max_steps={w.max_steps}",
                 f"events.generalized={w.target}", "train.stop_after_t4=0", *w.overrides]
    try:
        summary = train(load_config(w.config, overrides), store)
    except LossLabError as e:
        return Trial(w.name, optimizer, study, hp, math.inf, math.inf, error=str(e))
    t4 = summary["events"]["t4"]
    if t4 is None:
        return Trial(w.name, optimizer, study, hp, math.inf, math.inf, summary["run_id"])
    cost = {name: v for step, split, name, v in store.find(summary["run_id"]).metric_rows()
            if split == "cost" and step == t4}
    return Trial(w.name, optimizer, study, hp, cost["train_s"], cost["grad_evals"], summary["run_id"])
