"""Critical sections that a terminating signal must not cut in the middle.

A client library cut mid-message can leave its connection waiting for the server (a
``LOAD DATA LOCAL`` upload interrupted part-way makes PyMySQL wait for a reply the
server never sends). The runner's signal handler asks :func:`defer` first: inside a
:func:`critical` block the signal is noted and raised again when the block ends.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_depth = 0
_pending: int | None = None


@contextmanager
def critical() -> Iterator[None]:
    """Signals arriving in this block (main thread) take effect when it ends."""
    global _depth, _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _pending is not None:
            signum, _pending = _pending, None
            signal.raise_signal(signum)  # the handler runs now, outside the block


def defer(signum: int) -> bool:
    """For signal handlers: True (and the signal noted) inside a critical block."""
    global _pending
    if _depth > 0:
        _pending = signum
        return True
    return False
