"""The runs the gallery's entries train, in the gallery's own store (FOLDER/runs). Their ids are
fixed by their configs, as a sweep's points are: entries that share a run train it once, and one
interrupted resumes.

An entry declares its runs (a preset and a list of overrides, one per run), so that `losslab
gallery` trains those of every entry it will make in one pool before it makes any: each core
busy with a run of its own from the first run to the last (a run of a small net barely gains from
a second thread), the longest first, where entry by entry the last run of each left a core idle.
"""

from __future__ import annotations

from pathlib import Path

from losslab.core import progress
from losslab.core.errors import LossLabError
from losslab.store.records import Job


def unfinished(folder: Path, runs: dict) -> dict:
    """Those of the `runs` ({run id: config}) not yet finished in the gallery's store, in their order."""
    from losslab.store import RunStore  # startup
    from losslab.sweep.run import finished_summary  # startup

    store = RunStore(folder / "runs")
    return {run_id: cfg for run_id, cfg in runs.items() if finished_summary(store, run_id) is None}


def train(folder: Path, todo: dict, workers: int | None = None, counts: dict | None = None) -> dict:
    """Train the runs `todo` ({run id: config}) in the gallery's store, in their order, `workers` at
    a time (None: a process per core, one thread each; 1: in this process, every core's threads),
    each finished one counted as progress (1, or its `counts`); {run id: seconds it trained}. Raises
    Stopped if a signal left one unfinished, LossLabError if one failed."""
    from losslab.store import RunStore  # startup
    from losslab.sweep.executors import LocalExecutor  # startup
    from losslab.sweep.run import finished_summary  # startup
    from losslab.train.stop import Stopped, stop_on_signals  # startup

    if not todo:
        return {}
    store = RunStore(folder / "runs")
    executor = LocalExecutor(min(len(todo), workers or LocalExecutor().workers))
    jobs = [Job(run_id, cfg.model_dump(mode="json"), str(store.root), executor.threads, figures=False)
            for run_id, cfg in todo.items()]
    failed, seconds = [], {}
    with stop_on_signals():  # a signal stops the runs at their next step, and their workers
        for result in executor(jobs):
            failed += [result] if result["status"] == "failed" else []
            seconds[result["run_id"]] = result.get("wall_s", 0.0)
            progress.advance((counts or {}).get(result["run_id"], 1))
    if failed:
        raise LossLabError(f"the gallery's run {failed[0]['run_id']} failed: {failed[0]['error']}")
    left = sum(finished_summary(store, run_id) is None for run_id in todo)
    if left:  # stopped by a signal: no figure from a run cut short
        raise Stopped(f"{left} of {len(todo)} runs unfinished")
    return seconds


def trained_each(folder: Path, preset: str, variants: list[list[str]], parallel: bool = False) -> list[tuple]:
    """Runs of `preset`, one per list of overrides, in the gallery's store (trained first where they
    are not; `parallel`: a process per core, else one after the other here): for each its summary,
    metric rows and folder."""
    from losslab.store import RunStore  # startup
    from losslab.sweep.run import finished_summary  # startup

    runs = configs(preset, variants)
    train(folder, unfinished(folder, dict(runs)), workers=None if parallel else 1)
    store = RunStore(folder / "runs")
    return [(finished_summary(store, run_id), (run := store.find(run_id)).metric_rows(), run) for run_id, _ in runs]


def configs(preset: str, variants: list[list[str]]) -> list[tuple]:
    """(run id, config) of each run of `preset`, one per list of overrides, in order."""
    from losslab.config import load_config  # startup
    from losslab.sweep.spec import Point  # startup

    points = [Point(0, {}, load_config(preset, overrides)) for overrides in variants]
    return [(point.run_id, point.config) for point in points]
