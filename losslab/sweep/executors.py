"""Executors run a sweep's jobs (plain dicts) through `run_point` and yield the results as they
finish. Each one splits this machine's cores between its workers (torch threads per run)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Protocol


class Executor(Protocol):
    workers: int  # runs at once (the cores are split between them)

    def __call__(self, jobs: list[dict]) -> Iterable[dict]: ...


class LocalExecutor:
    """A pool of `workers` processes on this machine (spawned: no forked torch state); one
    worker runs the jobs in this process, one after the other."""

    def __init__(self, workers: int = 1):
        self.workers = workers

    def __call__(self, jobs: list[dict]) -> Iterator[dict]:
        from losslab.sweep.run import run_point

        if self.workers == 1:
            yield from map(run_point, jobs)
            return
        with ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for future in as_completed([pool.submit(run_point, job) for job in jobs]):
                yield future.result()
