"""Work whose cost grows with the config (parsing a body, validating, dumping a config) runs
here: in a worker thread, so the event loop (other requests, the xDS streams) keeps going,
and with Python's cyclic garbage collector paused meanwhile.

Why pause it: a body of a few MB becomes millions of objects, and the collector, set off by
their allocation, walks all of them again and again; each full pass holds the interpreter
lock, stopping the event loop too (`bench/large_write.py --keep-collector`: an 8 MB PUT takes
twice as long and stalls the loop for seconds). Reference counting still frees every object
as usual; only garbage in reference cycles waits until no such work is running.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

from fastapi.concurrency import run_in_threadpool

P = ParamSpec("P")
T = TypeVar("T")

_lock = threading.Lock()
_running = 0
_paused_here = False


async def offload(work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`work(*args, **kwargs)` run in a worker thread, the cyclic collector paused."""

    def paused() -> T:
        with collector_paused():
            return work(*args, **kwargs)

    return await run_in_threadpool(paused)


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while any such block runs, in any thread."""
    global _running, _paused_here
    with _lock:
        _running += 1
        if _running == 1 and gc.isenabled():
            gc.disable()
            _paused_here = True
    try:
        yield
    finally:
        with _lock:
            _running -= 1
            if _running == 0 and _paused_here:
                _paused_here = False
                gc.enable()
