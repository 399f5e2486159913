"""A batch's phase, told to whoever runs it: from the moment every push of the batch is under way, the
batch only waits for its destinations' answers (and records them), so the delivery worker may start its
next batch instead of letting the slowest destination (Slack's one message a second) hold the next one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_on_pushes_under_way: ContextVar[Callable[[], None] | None] = ContextVar("on_pushes_under_way", default=None)


@contextmanager
def told_when_pushes_under_way(callback: Callable[[], None]) -> Iterator[None]:
    """Within this block, `pushes_under_way()` calls `callback` (the worker's batch)."""
    token = _on_pushes_under_way.set(callback)
    try:
        yield
    finally:
        _on_pushes_under_way.reset(token)


def pushes_under_way() -> None:
    """Every push of this batch is submitted; what is left is waiting for them (a flow run called
    directly: nobody is told)."""
    callback = _on_pushes_under_way.get()
    if callback is not None:
        callback()
