"""`losslab bench-optim`: every optimizer on every workload of a suite, scored as AlgoPerf does.

Results go to a folder of their own (trials.json, results.json, profile.png); the training
runs of the trials go through the run store like any other run.
"""

from __future__ import annotations

import json
import math
import re
import signal
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import numpy as np

from losslab.bench.scoring import bootstrap_intervals, median_times, performance_ratios, profile, scores
from losslab.bench.suite import SUITES, WORKLOADS, Trial, run_trial, trial_points
from losslab.core.errors import LossLabError, NotFound
from losslab.core.files import atomic_write, read_json
from losslab.core.plotting import subplots
from losslab.optimize.run import parse_spec
from losslab.store import RunStore
from losslab.train import stop

CLOCKS = {"seconds": "training seconds", "grad_evals": "gradient evaluations"}


def resolve(suite: str, workloads: list[str] | None, optimizers: list[str]) -> list[str]:
    """The workload names to run; raises ValueError on unknown names."""
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r} (known: {', '.join(SUITES)})")
    chosen = workloads or SUITES[suite]
    for w in chosen:
        if w not in WORKLOADS:
            raise ValueError(f"unknown workload {w!r} (known: {', '.join(WORKLOADS)})")
    for o in optimizers:
        parse_spec(o)
    if not optimizers:
        raise ValueError("no optimizer given")
    return chosen


def run_benchmark(suite: str, optimizers: list[str], trials: int, studies: int, store: RunStore,
                  workloads: list[str] | None = None, r_max: float = 4.0,
                  on_trial: Callable[[Trial, int, int], None] | None = None) -> dict:
    """Every trial, then the scores. SIGINT or SIGTERM stop it after the trial running (its run
    `interrupted`): the trials so far stay in trials.json, and the result says `interrupted`."""
    names = resolve(suite, workloads, optimizers)
    folder = store.root / "bench" / f"{suite}-{datetime.now():%Y%m%d-%H%M%S}"
    folder.mkdir(parents=True)
    done: list[Trial] = []
    built = {name: WORKLOADS[name]() for name in names}
    plan = [(w_name, opt, study, hp) for w_name in names for opt in optimizers for study in range(studies)
            for hp in trial_points(opt, trials, seed=study)]
    with stop.stop_on_signals():
        for w_name, opt, study, hp in plan:
            trial = run_trial(built[w_name], opt, study, hp, store)
            if stop.requested is not None:  # the trial was cut short: not a result
                return {"interrupted": signal.Signals(stop.requested).name, "folder": str(folder),
                        "trials_done": len(done), "trials": len(plan)}
            done.append(trial)
            text = json.dumps(jsonable([asdict(t) for t in done]), indent=1)
            atomic_write(folder / "trials.json", lambda p: p.write_text(text))
            if on_trial:
                on_trial(done[-1], len(done), len(plan))
    result = summarize(done, optimizers, names, studies, r_max)
    result.update(suite=suite, folder=str(folder), trials_per_study=trials, studies=studies, interrupted=None)
    figure = profile_figure(result)
    figure.savefig(folder / "profile.png", dpi=120)
    result["figure"] = str(folder / "profile.png")
    atomic_write(folder / "results.json", lambda p: p.write_text(json.dumps(jsonable(result), indent=2) + "\n"))
    return result


def find_benchmark(store: RunStore, ref: str) -> Path:
    """A finished benchmark's folder: its name in the store's bench/, or a suite's name (its newest
    benchmark: the names end in their start time)."""
    bench = store.root / "bench"
    if ref and "/" not in ref and (bench / ref / "results.json").is_file():
        return store.inside("bench", ref)
    of_suite = sorted(p.parent for p in bench.glob("*/results.json")
                      if re.fullmatch(rf"{re.escape(ref)}-\d{{8}}-\d{{6}}", p.parent.name))
    if not of_suite:
        raise NotFound(f"no finished benchmark {ref!r} in {bench}")
    return store.inside("bench", of_suite[-1].name)


def read_benchmark(folder: Path) -> tuple[dict, list[dict]]:
    """(results.json, trials.json) of a benchmark, the missed targets (null) back to infinity."""
    def infinite(obj):
        if obj is None:
            return math.inf
        if isinstance(obj, dict):
            return {k: infinite(v) for k, v in obj.items()}
        return obj
    result = read_json(folder / "results.json", f"benchmark {folder.name}: results.json")
    trials = read_json(folder / "trials.json", f"benchmark {folder.name}: trials.json")
    try:
        for block in result["clocks"].values():
            block["times"], block["ratios"] = infinite(block["times"]), infinite(block["ratios"])
        for t in trials:
            t["seconds"], t["grad_evals"] = infinite(t["seconds"]), infinite(t["grad_evals"])
    except (KeyError, TypeError, AttributeError) as e:
        raise LossLabError(f"benchmark {folder.name}: results.json or trials.json is not a benchmark's "
                           f"({type(e).__name__}: {e})") from None
    return result, trials


def summarize(done: list[Trial], optimizers: list[str], workloads: list[str], studies: int, r_max: float) -> dict:
    """Per clock: the workload times (median over studies of each study's fastest trial), the
    ratios, the scores with bootstrap intervals, and each best trial's hyperparameters."""
    best: dict[tuple[str, str, int], Trial] = {}
    for t in done:
        key = (t.optimizer, t.workload, t.study)
        if key not in best or t.seconds < best[key].seconds:
            best[key] = t
    out: dict = {"optimizers": optimizers, "workloads": workloads, "r_max": r_max, "clocks": {}}
    for clock in CLOCKS:
        per_study = {o: {w: [getattr(best[(o, w, s)], clock) for s in range(studies)] for w in workloads}
                     for o in optimizers}
        times = median_times(per_study)
        out["clocks"][clock] = {
            "times": times, "ratios": performance_ratios(times, r_max), "scores": scores(times, r_max),
            "intervals": bootstrap_intervals(per_study, r_max) if studies > 1 else None}
    out["best_hyperparameters"] = {o: {w: best[(o, w, 0)].hyperparameters for w in workloads} for o in optimizers}
    return out


def profile_figure(result: dict):
    """Performance profiles rho(tau), one panel per clock, like the AlgoPerf paper's."""
    r_max = result["r_max"]
    taus = np.linspace(1, r_max, 400)
    fig, axes = subplots(1, len(CLOCKS), figsize=(12, 4.2), constrained_layout=True)
    colors = {opt: f"C{i % 10}" for i, opt in enumerate(result["optimizers"])}
    for ax, (clock, label) in zip(axes, CLOCKS.items()):
        block = result["clocks"][clock]
        ranked = sorted(block["scores"], key=block["scores"].get, reverse=True)
        for opt in ranked:  # the legend in order of score, each optimizer in its own color in both panels
            ax.step(taus, profile(block["ratios"][opt], taus), where="post", color=colors[opt],
                    label=f"{opt} ({block['scores'][opt]:.3f})")
        ax.set(xlim=(1, r_max), ylim=(-0.02, 1.02), xlabel="tau (time / best time)",
               ylabel="fraction of workloads within tau of the best", title=f"performance profile: {label}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right", title="score")
    fig.suptitle(f"losslab bench-optim {result.get('suite', '')}: {len(result['workloads'])} workloads")
    return fig


def jsonable(obj):
    """The result with infinities (targets missed) as null, so that it is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj
