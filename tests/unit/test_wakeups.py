"""Waiters: woken by a change made after they registered, from any thread, and never deaf to
a cancel (a server's background tasks loop on them and are stopped by cancelling them)."""

from __future__ import annotations

import asyncio
import threading

from controlplane.wakeups import Wakeups


async def _settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


def test_a_waiter_is_woken_by_a_change_made_from_another_thread() -> None:
    async def scenario() -> bool:
        wakeups = Wakeups()
        with wakeups.waiter() as waiter:
            threading.Thread(target=wakeups.wake).start()
            return await waiter.wait(5.0)

    assert asyncio.run(scenario()) is True


def test_a_waiter_nobody_wakes_says_so_when_its_time_is_up() -> None:
    async def scenario() -> bool:
        with Wakeups().waiter() as waiter:
            return await waiter.wait(0.01)

    assert asyncio.run(scenario()) is False


def test_a_task_looping_on_a_waiter_ends_when_cancelled_as_it_is_woken() -> None:
    """The cancel comes between the wake and the waiter's return: `asyncio.wait_for` would
    lose it on Python 3.11, and the task would wait again, for ever."""

    async def scenario() -> bool:
        wakeups = Wakeups()

        async def following() -> None:
            while True:
                with wakeups.waiter() as waiter:
                    await waiter.wait(30.0)

        task = asyncio.create_task(following())
        await _settle()
        wakeups.wake()
        await asyncio.sleep(0)  # the event is set; the waiter has not resumed yet
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2.0)
        task.cancel()
        return task in done and task.cancelled()

    assert asyncio.run(scenario()) is True
