"""The forecast benchmark: grokking runs that losslab makes itself, on tasks, moduli, optimizers and
hyperparameters drawn so that every task has runs that grok and runs that do not.

Each task instance (an operation mod p, S4, a sparse parity) draws its hyperparameter settings
(optimizer, learning rate, weight decay, train fraction or examples) from ranges chosen per optimizer,
seeded, and trains each at several seeds: a run's outcome is then a matter of its settings and its
seed, not of a grid a predictor could memorize. The models are small one-hidden-layer MLPs, full batch
on the algorithmic tasks (each run a few seconds on a CPU core). A run grokked if t4 (validation
accuracy >= 99%) came within the step budget (`Design.budget`: about twice the t4 of the family's
reference setting, AdamW lr 3e-3 and weight decay 1 at r = 0.7, so that a run slower than that by more
than a factor of two counts as not grokking, as the papers' fixed training budgets count it).

The benchmark is an ordinary sweep of the store (`forecast-small`, `forecast-full`): resumable, its
table beside it, its runs readable with every other command.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from losslab.config import validate
from losslab.sweep.run import Sweep
from losslab.sweep.spec import Point

T_MAX = 800  # the latest step a forecast reads: the runs record what it needs up to here


@dataclass(frozen=True)
class Design:
    """What a benchmark trains: task instances x settings per instance x seeds, each run for at most
    `budget` steps (a run that has not generalized by then did not grok), its series kept to t_max."""

    moduli: tuple[int, ...]
    parity_bits: tuple[int, ...]
    settings: int  # drawn per task instance
    seeds: int
    budget: int = 6000
    t_max: int = T_MAX
    width: int = 256


DESIGNS = {"small": Design(moduli=(29, 37), parity_bits=(20, 30), settings=8, seeds=3),
           "full": Design(moduli=(29, 37, 59, 97), parity_bits=(20, 30, 40), settings=16, seeds=5)}
SIZES = tuple(DESIGNS)
OPERATIONS = ("add", "sub", "mul", "div", "sq_sum")
OPTIMIZERS = ("adamw", "sgd", "grokfast_ema")

# per optimizer: log-uniform learning rate and weight decay ranges where runs of these models
# sometimes grok and sometimes do not (measured on pilots of add mod 31)
RANGES = {"adamw": {"lr": (1e-3, 1e-2), "weight_decay": (0.1, 3.0)},
          "grokfast_ema": {"lr": (1e-3, 1e-2), "weight_decay": (0.1, 3.0)},
          "sgd": {"lr": (0.1, 0.5), "weight_decay": (1e-3, 5e-3)}}
PARITY_RANGES = {"adamw": {"lr": (1e-3, 1e-2), "weight_decay": (0.1, 3.0)},
                 "grokfast_ema": {"lr": (1e-3, 1e-2), "weight_decay": (0.1, 3.0)},
                 "sgd": {"lr": (0.03, 0.3), "weight_decay": (1e-3, 3e-2)}}


def task_instances(design: Design) -> list[dict]:
    """Every task instance: its family (what leave-one-task-out holds out) and its [task] section."""
    modular = [{"family": op, "p": p, "task": {"name": "modular", "op": op, "p": p}}
               for op in OPERATIONS for p in design.moduli]
    group = [{"family": "s4", "p": None, "task": {"name": "modular", "op": "s4"}}]
    parity = [{"family": "parity", "p": None, "task": {"name": "parity", "n": n, "k": 3, "n_test": 200}}
              for n in design.parity_bits]
    return modular + group + parity


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def draw_settings(instance: dict, count: int, rng: np.random.Generator) -> list[dict]:
    """`count` settings of one task instance: an optimizer and its rates, and the data's size."""
    settings = []
    first = int(rng.integers(len(OPTIMIZERS)))
    for i in range(count):
        optimizer = OPTIMIZERS[(first + i) % len(OPTIMIZERS)]  # in turn: each as often, across instances
        parity = instance["task"]["name"] == "parity"
        ranges = (PARITY_RANGES if parity else RANGES)[optimizer]
        setting = {"optimizer": optimizer, **{k: round(_log_uniform(rng, *r), 6) for k, r in ranges.items()}}
        if parity:
            setting["n_train"] = int(round(_log_uniform(rng, 300, 1500)))
        else:  # S4 has 576 pairs: it needs more of them than an operation mod p does
            low = 0.6 if instance["family"] == "s4" else 0.45
            setting["train_fraction"] = round(float(rng.uniform(low, 0.85)), 3)
        settings.append(setting)
    return settings


def run_config(name: str, instance: dict, setting: dict, seed: int, design: Design) -> dict:
    """The raw config of one benchmark run."""
    task = {**instance["task"]}
    if "n_train" in setting:
        task["n_train"] = setting["n_train"]
    else:
        task["train_fraction"] = setting["train_fraction"]
    optim = {"name": setting["optimizer"], "lr": setting["lr"], "weight_decay": setting["weight_decay"]}
    if setting["optimizer"] == "sgd":
        optim["momentum"] = 0.9
    parity = instance["task"]["name"] == "parity"
    return {"name": name, "seed": seed, "task": task,
            "model": {"name": "mlp", "depth": 1, "width": design.width, "activation": "relu"},
            "optim": optim,
            "train": {"max_steps": design.budget, "eval_every": 50, "stop_after_t4": 0,
                      "record_loss_steps": design.t_max, "checkpoint_per_decade": 1,
                      **({"batch_size": 32} if parity else {})},
            # the cheap series (gradient norm, weight norms, cosines) every 25 steps
            "probes": {"every": 25, "geometry": True}}


def design_points(design: Design, name: str, seed: int = 0) -> list[Point]:
    """The benchmark's runs, each a sweep point whose values say its task, p, setting and seed."""
    rng = np.random.default_rng(seed)
    points = []
    for instance in task_instances(design):
        for setting in draw_settings(instance, design.settings, rng):
            for run_seed in range(design.seeds):
                values = {"family": instance["family"], "p": instance["p"], **setting, "seed": run_seed}
                config = validate(run_config(name, instance, setting, run_seed, design))
                points.append(Point(len(points), values, config))
    return points


def benchmark_sweep(store, design: Design, name: str, force: bool = False) -> Sweep:
    """The benchmark as a sweep of `store` (refused if an earlier build of it differs); its manifest
    keeps the design."""
    source = json.dumps({"design": design.__dict__, "operations": OPERATIONS, "optimizers": OPTIMIZERS,
                         "ranges": RANGES, "parity_ranges": PARITY_RANGES})
    return Sweep(name, design_points(design, name), store, source, force, run_figures=False)
