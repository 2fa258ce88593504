"""Stopping on SIGINT and SIGTERM: one request per process that every loop in it reads.

A run, a group of batched runs, a sweep and every command that trains many runs in a row
stop the same way: the signal sets `requested`, each loop reads it at its next step (a run
checkpoints and ends `interrupted`; a sweep starts no new point and waits for its running
ones), and the command exits 128 + the signal. Sweep workers are started by `worker_started`:
they stop with their sweep and die with it.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)
requested: int | None = None  # the signal that asked this process to stop, if one did
_depth = 0  # nested stop_on_signals: only the outermost installs and resets


class Stopped(Exception):
    """What was being made needs runs that a stop request left unfinished: none of it is kept (the
    runs resume when it is made again)."""


def _request(sig: int, frame) -> None:
    global requested
    requested = sig
    forward(sig)  # a sweep's workers, at once: a job they take from now on does not start


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Inside: SIGINT and SIGTERM set `requested` instead of ending the process (handlers can be
    set only in the main thread; elsewhere the caller's handling stays)."""
    global _depth, requested
    saved = {}
    if _depth == 0 and threading.current_thread() is threading.main_thread():
        requested = None
        saved = {sig: signal.signal(sig, _request) for sig in SIGNALS}
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def exit_code(signal_name: str | None = None) -> int:
    """The shell's code for a process ended by a signal (by name, or the one requested): 130 for
    SIGINT, 143 for SIGTERM."""
    named = signal.Signals.__members__.get(signal_name or "")
    return 128 + (named or requested or signal.SIGINT)


# ---------------------------------------------------------------- sweep workers

_parent: int | None = None
_busy = False  # a worker running a job
PR_SET_PDEATHSIG = 1


def _in_worker(sig: int, frame) -> None:
    """A sweep worker's signal: its sweep is stopping (the job running stops at its next step,
    later ones do not start), or its sweep died (an idle worker exits at once)."""
    global requested
    requested = sig
    if not _busy and os.getppid() != _parent:
        os._exit(128 + sig)


def worker_started(parent: int) -> None:
    """A sweep worker's set-up: SIGTERM when its parent dies (Linux), the worker's handler for
    the whole life of the process (the runs inside it do not install their own)."""
    global _parent, _depth
    _parent, _depth = parent, 1
    try:
        ctypes.CDLL("libc.so.6").prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the check after each job remains
        pass
    for sig in SIGNALS:
        signal.signal(sig, _in_worker)
    if os.getppid() != parent:  # it died before prctl
        os._exit(1)


def call_in_worker(fn, item):
    """fn(item) in a sweep worker, or None if the sweep is stopping; a worker whose sweep died
    exits after the job instead of waiting for more."""
    global _busy
    if requested is not None:
        return None
    _busy = True
    try:
        result = fn(item)
    finally:
        _busy = False
    if os.getppid() != _parent:
        os._exit(1)
    return result


def forward(sig: int) -> None:
    """Pass a stop on to this process's worker processes (a SIGTERM sent to the sweep alone)."""

    for child in multiprocessing.active_children():
        try:
            os.kill(child.pid, sig)
        except ProcessLookupError:
            pass
