"""Progress of long work without a callback threaded through every function.

The library calls `advance()` in its inner loops (a curvature product, a grid point, a curve
step, a trained width); whoever wants to show progress runs the work inside `reporting(sink)`,
and the sink receives the counts. Outside of it `advance` does nothing: a library user pays one
context-variable read per unit of work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_sink: ContextVar[Callable[[int], None] | None] = ContextVar("losslab_progress", default=None)


def advance(n: int = 1) -> None:
    sink = _sink.get()
    if sink is not None:
        sink(n)


@contextmanager
def reporting(sink: Callable[[int], None]) -> Iterator[None]:
    token = _sink.set(sink)
    try:
        yield
    finally:
        _sink.reset(token)
