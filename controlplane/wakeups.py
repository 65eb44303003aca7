"""Waking coroutines that wait on any number of event loops, from any thread.

A waiter registers before it looks at the state it waits on, so a change made between the
look and the wait still wakes it:

    while True:
        with wakeups.waiter() as waiter:
            if condition_holds():
                return
            await waiter.wait(remaining)
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Waiter:
    """One coroutine's registration: woken once something changed after it registered."""

    loop: asyncio.AbstractEventLoop
    event: asyncio.Event

    async def wait(self, timeout: float) -> bool:
        """Wait until woken or `timeout` seconds passed; whether it was woken. A cancel is
        never lost, even one that comes as the waiter is woken (`asyncio.wait_for` loses it on
        Python 3.11: a task that loops on a waiter would then never end)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, timeout)):
                await self.event.wait()
        return self.event.is_set()


class Wakeups:
    """The waiters of one piece of state; `wake` after every change to it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: list[Waiter] = []

    def __len__(self) -> int:
        """How many waiters are registered right now."""
        with self._lock:
            return len(self._waiters)

    @contextlib.contextmanager
    def waiter(self) -> Iterator[Waiter]:
        """Register a waiter of the running loop for as long as the block lasts."""
        waiter = Waiter(asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.append(waiter)
        try:
            yield waiter
        finally:
            with self._lock:
                self._waiters.remove(waiter)

    def wake(self) -> None:
        """Wake every registered waiter, on its own loop (callable from any thread)."""
        with self._lock:
            waiters = list(self._waiters)
        for waiter in waiters:
            with contextlib.suppress(RuntimeError):  # that waiter's loop has closed
                waiter.loop.call_soon_threadsafe(waiter.event.set)
