"""Stopping on SIGINT and SIGTERM: one request per process that every loop in it reads.

A run, a group of batched runs, a sweep and every command that trains many runs in a row
stop the same way: the signal sets `requested`, each loop reads it at its next step (a run
checkpoints and ends `interrupted`; a sweep starts no new point and waits for its running
ones), and the command exits 128 + the signal. Sweep workers are started by `worker_started`:
they stop with their sweep and die with it.

A signal at a known point, for tests and demonstrations: with LOSSLAB_SIGNAL_AT=K:STEP[:SIGNAL]
in the environment, the K-th run begun in a process sends SIGNAL (SIGINT by default) at STEP to
the process that stops the work (a sweep worker's sweep, else its own), once, as a scheduler sends
it: the stop then takes the path of any other.
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
_begun = 0  # runs begun in this process


def _signal_at(text: str | None) -> tuple[int, int, int] | None:
    if not text:
        return None
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts[:2]) or \
            (len(parts) == 3 and parts[2] not in signal.Signals.__members__):
        raise ValueError(f"LOSSLAB_SIGNAL_AT={text!r}: expected K:STEP[:SIGINT|SIGTERM]")
    return int(parts[0]), int(parts[1]), signal.Signals[parts[2]] if len(parts) == 3 else signal.SIGINT


_planned = _signal_at(os.environ.get("LOSSLAB_SIGNAL_AT"))  # (run, step, signal), until sent


def run_begun() -> int:
    """The number of the run beginning now in this process (1, 2, ...)."""
    global _begun
    _begun += 1
    return _begun


def reached(run: int, step: int) -> None:
    """Run number `run` is at `step`: the planned signal goes out if this is its point."""
    global _planned
    if _planned is not None and _planned[:2] == (run, step):
        sig, _planned = _planned[2], None
        os.kill(_parent or os.getpid(), sig)


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
