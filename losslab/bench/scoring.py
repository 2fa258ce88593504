"""AlgoPerf scoring (v0.6): performance profiles and their normalized area.

Per workload w, an optimizer's time to target t_w (infinite when missed) becomes the ratio
r_w = t_w / min over optimizers of t_w, set to infinity above r_max. The performance profile
rho(tau) is the fraction of workloads with r_w <= tau, and the score is

    (1 / (r_max - 1)) * integral from 1 to r_max of rho(tau) d tau,

1.0 for the fastest on every workload, 0 for never within r_max of the best. rho is a step
function, so the integral is exact: each workload with r_w <= r_max contributes
(r_max - r_w) / (r_max - 1) / n_workloads.
"""

from __future__ import annotations

import math
import statistics

import numpy as np

Times = dict[str, dict[str, float]]  # optimizer -> workload -> time to target (inf: missed)


def performance_ratios(times: Times, r_max: float = 4.0) -> Times:
    workloads = sorted({w for per in times.values() for w in per})
    best = {w: min(per.get(w, math.inf) for per in times.values()) for w in workloads}
    ratios: Times = {}
    for opt, per in times.items():
        ratios[opt] = {}
        for w in workloads:
            t = per.get(w, math.inf)
            r = t / best[w] if math.isfinite(t) and best[w] > 0 else (1.0 if t == best[w] == 0 else math.inf)
            ratios[opt][w] = r if r <= r_max else math.inf
    return ratios


def profile(ratios: dict[str, float], taus: np.ndarray) -> np.ndarray:
    """rho(tau) for each tau: the fraction of workloads within a factor tau of the best."""
    r = np.array(list(ratios.values()))
    return (r[None, :] <= taus[:, None]).mean(axis=1)


def score(ratios: dict[str, float], r_max: float = 4.0) -> float:
    return sum((r_max - r) / (r_max - 1) for r in ratios.values() if r <= r_max) / len(ratios)


def scores(times: Times, r_max: float = 4.0) -> dict[str, float]:
    return {opt: score(r, r_max) for opt, r in performance_ratios(times, r_max).items()}


def median_times(study_times: dict[str, dict[str, list[float]]]) -> Times:
    """Each workload's time: the median over independent studies (AlgoPerf's external tuning)."""
    return {opt: {w: statistics.median(ts) for w, ts in per.items()} for opt, per in study_times.items()}


def bootstrap_intervals(study_times: dict[str, dict[str, list[float]]], r_max: float = 4.0,
                        resamples: int = 1000, level: float = 0.95, seed: int = 0) -> dict[str, tuple[float, float]]:
    """Percentile intervals of each score, resampling every (optimizer, workload)'s studies."""
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {opt: [] for opt in study_times}
    for _ in range(resamples):
        times = {opt: {w: float(np.median(rng.choice(ts, size=len(ts)))) for w, ts in per.items()}
                 for opt, per in study_times.items()}
        for opt, s in scores(times, r_max).items():
            draws[opt].append(s)
    tail = (1 - level) / 2 * 100
    return {opt: (float(np.percentile(d, tail)), float(np.percentile(d, 100 - tail))) for opt, d in draws.items()}
