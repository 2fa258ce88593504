"""One job of a sweep, as a worker runs it: plain data in (the point's config, its run id, the
store, the threads, the stop rule), its run's summary or failure out. The executors call these."""

from __future__ import annotations

import shutil

import torch

from losslab.config import validate
from losslab.core.errors import LossLabError
from losslab.store import RunDir, RunStore
from losslab.store.records import Job
from losslab.train import stop as signals
from losslab.train.batched import BatchedTrainers
from losslab.train.loop import prepare, prepare_resume, run_to_end, save_outcome


def prepare_point(job: Job):
    """The trainer of one point's run: resumed if the run exists, new otherwise, with the sweep's
    stop rule if it has one."""
    store, run_id = RunStore(job.store), job.run_id
    path = store.root / run_id
    trainer = None
    if path.exists():
        try:
            trainer = prepare_resume(RunDir.open(path), store)
        except LossLabError:  # killed before its first summary: nothing worth keeping
            shutil.rmtree(path)
    if trainer is None:
        trainer = prepare(validate(job.config), store, run_id)
    if job.stop:
        trainer.should_stop = unpromising(job.stop["forecaster"])
    return trainer


def unpromising(forecaster):
    """A trainer stop rule: at the first evaluation at or past the forecaster's T, stop the run
    (reason "unpromising") if its p(grok) is below the forecaster's threshold; decided once.
    `forecaster` is a losslab.forecast Forecaster (its t, threshold and p_grok(rows, config))."""
    decided = False

    def check(trainer) -> str | None:
        nonlocal decided
        if decided or trainer.step < forecaster.t:
            return None
        decided = True
        try:
            p = forecaster.p_grok(trainer.rows, trainer.cfg)
        except ValueError:  # diverging, or no whole window: the run goes on
            return None
        return "unpromising" if p < forecaster.threshold else None
    return check


def failure(job: Job, e: Exception) -> dict:
    return {"run_id": job.run_id, "status": "failed", "error": f"{type(e).__name__}: {e}".splitlines()[0]}


def run_point(job: Job) -> dict | None:
    """Train one point's run (or resume it); a failure is returned as a result, never raised, so
    that one bad run does not stop the sweep. Runs in a worker process: plain data in and out.
    None: the sweep was asked to stop before this point's run began (nothing was made)."""
    torch.set_num_threads(job.threads)
    if signals.requested is not None:  # checked again here: the imports above take a while in a new worker
        return None
    try:
        return run_to_end(prepare_point(job), figures=job.figures)
    except Exception as e:  # noqa: BLE001 - any failure of one run is recorded and the sweep goes on
        return failure(job, e)


def run_together(jobs: list[Job]) -> list[dict]:
    """Train the runs of points of the same shapes together (losslab.train.batched), or a lone
    one as run_point does; their summaries or failures, as run_point's."""
    if len(jobs) == 1:
        return [r for r in [run_point(jobs[0])] if r is not None]
    torch.set_num_threads(jobs[0].threads)
    trainers, prepared, results = [], [], []
    for job in jobs:
        if signals.requested is not None:  # the sweep is stopping: the rest of the group does not start
            break
        try:
            trainers.append(prepare_point(job))
            prepared.append(job)
        except Exception as e:  # noqa: BLE001 - recorded; the others go on
            results.append(failure(job, e))
    if trainers:
        try:
            BatchedTrainers(trainers).run()
        except Exception as e:  # noqa: BLE001 - the group failed together
            return results + [failure(job, e) for job in prepared]
        results += [save_outcome(t, job.figures) for t, job in zip(trainers, prepared)]
    return results
