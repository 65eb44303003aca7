"""The subscribers of one store object, told each new head number once, in increasing order."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .base import RevisionListener

log = logging.getLogger(__name__)


class Listeners:
    """Who `Store.subscribe`d, and the newest number they were told.

    `announce` may be called from several threads (a committer, a notification thread) and
    with numbers already told, or older: each listener hears only numbers above every number
    it heard before. A listener that raises is logged; the others are still told.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[RevisionListener] = []
        self._announced = 0

    def add(self, listener: RevisionListener) -> Callable[[], None]:
        """Subscribe `listener`; returns the function that unsubscribes it."""
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    def known(self, number: int) -> None:
        """`number` is a head the listeners need not be told (it was the head when they
        subscribed); later announcements must be above it."""
        with self._lock:
            self._announced = max(self._announced, number)

    def announce(self, number: int) -> None:
        """Tell every listener that `number` is the head, unless a number as high was told."""
        with self._lock:
            if number <= self._announced:
                return
            self._announced = number
            for listener in list(self._listeners):
                try:
                    listener(number)
                except Exception:
                    log.exception("a store listener failed on revision %d", number)


class Signals:
    """Who `Store.subscribe_reports`d: each told, with no argument, on every `tell`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    def add(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Subscribe `listener`; returns the function that unsubscribes it."""
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    def tell(self) -> None:
        """Call every listener; one that raises is logged, the others are still told."""
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener()
            except Exception:
                log.exception("a reports listener failed")
