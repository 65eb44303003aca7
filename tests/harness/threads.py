"""Work raced in several threads that take turns as often as the interpreter allows, to make
a missing lock show."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable


def race(work: Callable[[int], None], threads: int = 4) -> list[BaseException]:
    """Run `work(0)` ... `work(threads - 1)` at once, each in its own thread, at the shortest
    switch interval; what they raised."""
    failures: list[BaseException] = []

    def run(n: int) -> None:
        try:
            work(n)
        except BaseException as exc:  # reported by the caller's thread
            failures.append(exc)

    started = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for thread in started:
            thread.start()
        for thread in started:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    return failures
