"""The label-noise threshold of grokking ("Beyond Memorization", Table 3.1): the fraction of
flipped training labels beyond which a sparse-parity run no longer generalizes within its
steps, found by bisection for each (n, weight decay).

A run "groks" when it reaches t4 (the parity preset: 100% validation accuracy, on clean labels)
within train.max_steps. Bisection assumes grokking is monotone in the noise: it keeps the
largest fraction seen to grok (`low`) and the smallest seen to fail (`high`).
"""

from __future__ import annotations

from functools import partial

import torch

from losslab.config import load_config
from losslab.store import RunStore
from losslab.sweep.executors import in_pool
from losslab.train import stop
from losslab.train.loop import prepare, run_to_end

NOISE_MAX = 0.5  # labels flipped at random half of the time carry no information


def groks(base: str, overrides: list[str], noise: float, store_root: str) -> dict | None:
    """The run at this noise; None once a stop is requested (before it began, or while it ran)."""
    cfg = load_config(base, [*overrides, f"task.noise={noise}", "name=noise-threshold"])
    if stop.requested is not None:  # checked just before the run folder is made
        return None
    summary = run_to_end(prepare(cfg, RunStore(store_root)), figures=False)
    if stop.requested is not None:
        return None
    return {"noise": noise, "grokked": summary["events"]["t4"] is not None, "t4": summary["events"]["t4"],
            "run_id": summary["run_id"], "wall_s": summary["wall_s"]}


def bisect_noise(base: str, overrides: list[str], store_root: str, iterations: int = 5, threads: int = 1) -> dict:
    """The threshold bracket [low, high) after `iterations` halvings of [0, 0.5); None if a
    stop request (SIGINT, SIGTERM) cut it short."""
    torch.set_num_threads(threads)
    low, high, runs = 0.0, NOISE_MAX, []
    clean = groks(base, overrides, 0.0, store_root)
    if clean is None:
        return None
    runs.append(clean)
    if not clean["grokked"]:
        return {"overrides": overrides, "low": None, "high": 0.0, "threshold": None, "runs": runs}
    for _ in range(iterations):
        middle = round((low + high) / 2, 6)
        run = groks(base, overrides, middle, store_root)
        if run is None:
            return None
        runs.append(run)
        low, high = (middle, high) if run["grokked"] else (low, middle)
    return {"overrides": overrides, "low": low, "high": high, "threshold": (low + high) / 2, "runs": runs}


def _bisect_setting(base: str, store_root: str, iterations: int, setting: tuple[int, float, list[str]]):
    n, wd, overrides = setting
    found = bisect_noise(base, overrides, store_root, iterations)
    return None if found is None else {"n": n, "weight_decay": wd, **found}


def noise_table(ns: list[int], decays: list[float], store_root: str, base: str = "parity", iterations: int = 5,
                workers: int = 1, extra: list[str] = (), on_setting=None) -> list[dict]:
    """The threshold for every (n, weight decay), settings in parallel over `workers` processes,
    in the order of the settings; after a stop request (SIGINT, SIGTERM), the settings done.
    `on_setting(done, total, row)` after each setting bisected."""
    settings = [(n, wd, [*extra, f"task.n={n}", f"optim.weight_decay={wd}"]) for n in ns for wd in decays]
    for _, _, overrides in settings:
        load_config(base, [*overrides, "task.noise=0.25"])  # refuse a bad setting before any run
    with stop.stop_on_signals():
        found = []
        for r in in_pool(workers, partial(_bisect_setting, base, store_root, iterations), settings):
            if r is not None:
                found.append(r)
                if on_setting:
                    on_setting(len(found), len(settings), r)
    order = {(n, wd): i for i, (n, wd, _) in enumerate(settings)}
    return sorted(found, key=lambda r: order[r["n"], r["weight_decay"]])
