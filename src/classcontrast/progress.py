"""Progress of long calls, reported pass by pass: the engine calls `tick` after every forward (and backward) pass of
a call; whoever wants to show progress (the command line's bars) installs a callback with `reporting` for the
calls it makes. Nothing is reported, and nothing costs, when no one listens. The callback is per thread (a context
variable): calls made in other threads report to their own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_CALLBACK: ContextVar[Callable[[], None] | None] = ContextVar("classcontrast_progress", default=None)


@contextmanager
def reporting(callback: Callable[[], None]) -> Iterator[None]:
    """Call ``callback()`` after every pass of every `explain` made inside the block (in this thread)."""
    token = _CALLBACK.set(callback)
    try:
        yield
    finally:
        _CALLBACK.reset(token)


def tick() -> None:
    """One pass done (the engine's call)."""
    callback = _CALLBACK.get()
    if callback is not None:
        callback()


__all__ = ["reporting", "tick"]
