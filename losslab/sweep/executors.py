"""Executors run a sweep's jobs (store.records.Job) through `jobs.run_point` (batched:
`jobs.run_together`) and yield the results (summaries, or failures: dicts) as they finish. Each
splits the cores it has between its workers: `threads` torch threads each.

On SIGINT or SIGTERM (losslab.train.stop) no new job starts: the running ones are told to stop
(they checkpoint and come back `interrupted`) and are still yielded. Worker processes die with
the sweep's process, even a killed one.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Protocol

from losslab.config import validate
from losslab.core.errors import LossLabError
from losslab.store.records import Job
from losslab.sweep.jobs import run_point, run_together
from losslab.train import stop
from losslab.train.batched import batch_key


class Executor(Protocol):
    workers: int  # processes (or Ray tasks) at once
    threads: int  # torch threads of each

    def __call__(self, jobs: list[Job]) -> Iterable[dict]: ...


def in_pool(workers: int, fn: Callable, items: list) -> Iterator:
    """fn of each item, as they finish: in a pool of `workers` processes (spawned: no forked
    torch state), or in this process, one after the other, for one worker. After a stop
    request (passed on to the workers by its handler) only what was running finishes; fn
    returns None for an item it did not start."""
    if workers == 1:
        for item in items:
            if stop.requested is not None:
                return
            if (result := fn(item)) is not None:  # None: it did not start
                yield result
        return
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=stop.worker_started, initargs=(os.getpid(),)) as pool:
        pending = {pool.submit(stop.call_in_worker, fn, item) for item in items}
        while pending:
            done, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
            if stop.requested is not None:  # what is queued does not start (a worker skips what it took)
                for future in pending:
                    future.cancel()
            for future in done:
                if not future.cancelled() and (result := future.result()) is not None:  # None: not started
                    yield result


class LocalExecutor:
    """A pool of `workers` processes on this machine; one worker runs the jobs in this process."""

    def __init__(self, workers: int | None = None):
        cores = os.cpu_count() or 1
        self.workers = workers or cores
        self.threads = max(1, cores // self.workers)

    def __call__(self, jobs: list[Job]) -> Iterator[dict]:
        yield from in_pool(self.workers, run_point, jobs)


class BatchedExecutor:
    """Runs of the same shapes (task, model, loss, batch size; seeds, learning rates, weight
    decays and schedules may differ) train together, through one vmapped forward and backward
    pass (losslab.train.batched); other runs train alone. Each group of such runs (up to `group`)
    is shared out between `workers` processes, as LocalExecutor's, so that what stays per run
    (evaluations, checkpoints) has every core too."""

    def __init__(self, workers: int | None = None, group: int = 64):
        cores = os.cpu_count() or 1
        self.workers, self.group = workers or cores, group
        self.threads = max(1, cores // self.workers)

    def __call__(self, jobs: list[Job]) -> Iterator[dict]:
        parts, groups = [], {}
        for job in jobs:
            key = batch_key(validate(job.config))
            if key is None:
                parts.append([job])
            else:
                groups.setdefault(key, []).append(job)
        for members in groups.values():
            for start in range(0, len(members), self.group):
                chunk = members[start:start + self.group]
                shares = min(self.workers, len(chunk))
                parts += [chunk[i::shares] for i in range(shares)]  # interleaved: each share spans the axes
        for results in in_pool(self.workers, run_together, parts):
            yield from results


def _reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse at once an address nothing listens at (Ray itself retries for tens of seconds)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError) as e:
        raise LossLabError(f"cannot reach the Ray cluster at {address} ({e})") from None


class RayExecutor:
    """Ray tasks, one run each, on a Ray cluster: `address` joins a running one ('auto': the one
    started on this machine by `ray start --head`, or a host:port), None starts a local Ray.

    Ray >= 2.59 turns token authentication on: a local Ray makes its own token; joining a
    cluster needs its token in RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH (or ~/.ray/auth_token,
    where `ray get-auth-token` leaves it). Every node needs losslab installed and the run
    store on a shared file system.
    """

    def __init__(self, workers: int | None = None, address: str | None = None):
        try:
            import ray  # optional
        except ImportError:
            raise LossLabError("--executor ray needs Ray: pip install 'losslab[ray]'") from None
        if address not in (None, "auto"):
            _reachable(address)
        try:
            ray.init(address=address, num_cpus=None if address else os.cpu_count(), include_dashboard=False,
                     log_to_driver=False, ignore_reinit_error=True)
        except Exception as e:  # noqa: BLE001 - ConnectionError, auth errors, ...: one clear line
            hint = ("; set RAY_AUTH_TOKEN (see `ray get-auth-token`)"
                    if "auth" in str(e).lower() or "token" in str(e).lower() else "")
            raise LossLabError(f"cannot join the Ray cluster at {address}: {str(e).splitlines()[0]}{hint}") from None
        self._ray = ray
        cores = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.workers = workers or cores
        self.threads = max(1, cores // self.workers)

    def __call__(self, jobs: list[Job]) -> Iterator[dict]:
        ray = self._ray
        task = ray.remote(num_cpus=self.threads, max_retries=0)(run_point)
        try:
            pending = [task.remote(job) for job in jobs]
            while pending:
                done, pending = ray.wait(pending, num_returns=1, timeout=1.0)
                if stop.requested is not None:  # the cluster's tasks are cancelled: they resume on a rerun
                    for ref in pending:
                        ray.cancel(ref)
                    return
                if done:
                    yield ray.get(done[0])
        finally:
            ray.shutdown()
