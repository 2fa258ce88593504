"""Progress of long work without a callback threaded through every function.

The library calls `advance()` in its inner loops (a curvature product, a grid point, a curve
step, a trained width), and `expect(total)` where it knows how much work a call will be;
whoever wants to show progress runs the work inside `reporting(sink, expected)`, and receives
the counts and the total. Outside of it both do nothing: a library user pays one
context-variable read per unit of work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

Sinks = tuple[Callable[[int], None], Callable[[int], None] | None]
_sink: ContextVar[Sinks | None] = ContextVar("losslab_progress", default=None)


def advance(n: int = 1) -> None:
    sinks = _sink.get()
    if sinks is not None:
        sinks[0](n)


def expect(total: int) -> None:
    """The units of work the call under way will report in all."""
    sinks = _sink.get()
    if sinks is not None and sinks[1] is not None:
        sinks[1](total)


@contextmanager
def reporting(sink: Callable[[int], None], expected: Callable[[int], None] | None = None) -> Iterator[None]:
    token = _sink.set((sink, expected))
    try:
        yield
    finally:
        _sink.reset(token)
