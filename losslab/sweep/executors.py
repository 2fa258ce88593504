"""Executors run a sweep's jobs (plain dicts) through `run_point` and yield the results as they
finish. Each splits the cores it has between its workers: `threads` torch threads per run."""

from __future__ import annotations

import multiprocessing
import os
import socket
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Protocol

from losslab.errors import LossLabError


class Executor(Protocol):
    workers: int  # runs at once
    threads: int  # torch threads of each run

    def __call__(self, jobs: list[dict]) -> Iterable[dict]: ...


class LocalExecutor:
    """A pool of `workers` processes on this machine (spawned: no forked torch state); one
    worker runs the jobs in this process, one after the other."""

    def __init__(self, workers: int | None = None):
        cores = os.cpu_count() or 1
        self.workers = workers or cores
        self.threads = max(1, cores // self.workers)

    def __call__(self, jobs: list[dict]) -> Iterator[dict]:
        from losslab.sweep.run import run_point

        if self.workers == 1:
            yield from map(run_point, jobs)
            return
        with ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for future in as_completed([pool.submit(run_point, job) for job in jobs]):
                yield future.result()


class BatchedExecutor:
    """Runs of the same shapes (task, model, loss, batch size; seeds, learning rates, weight
    decays and schedules may differ) train together in this process, `group` at a time, through
    one vmapped forward and backward pass (losslab.train.batched); other runs train alone."""

    workers = 1

    def __init__(self, group: int = 64):
        self.group = group
        self.threads = os.cpu_count() or 1

    def __call__(self, jobs: list[dict]) -> Iterator[dict]:
        import torch

        from losslab.config import validate
        from losslab.sweep.run import failure, prepare_point, run_point
        from losslab.train.batched import BatchedTrainers, batch_key
        from losslab.train.loop import conclude

        torch.set_num_threads(self.threads)
        groups: dict[str, list[dict]] = {}
        for job in jobs:
            key = batch_key(validate(job["config"]))
            if key is None:
                yield run_point(job)
            else:
                groups.setdefault(key, []).append(job)
        for members in groups.values():
            for start in range(0, len(members), self.group):
                trainers, prepared = [], []
                for job in members[start:start + self.group]:
                    try:
                        trainers.append(prepare_point(job))
                        prepared.append(job)
                    except Exception as e:  # noqa: BLE001 - recorded; the others go on
                        yield failure(job, e)
                if not trainers:
                    continue
                try:
                    BatchedTrainers(trainers).run()
                except Exception as e:  # noqa: BLE001 - the group failed together
                    yield from (failure(job, e) for job in prepared)
                    continue
                yield from (conclude(t, job.get("figures", True)) for t, job in zip(trainers, prepared))


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
            import ray
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

    def __call__(self, jobs: list[dict]) -> Iterator[dict]:
        from losslab.sweep.run import run_point

        ray = self._ray
        task = ray.remote(num_cpus=self.threads, max_retries=0)(run_point)
        try:
            pending = [task.remote(job) for job in jobs]
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                yield ray.get(done[0])
        finally:
            ray.shutdown()
