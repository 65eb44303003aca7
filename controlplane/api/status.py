"""Who runs what: the seam the API reads the fleet through, and an in-memory implementation.

The fleet's `LedgerStatus` backs `StatusSource` in a running server; `InMemoryStatus` serves
tests and an API without proxies. The records themselves are the fleet's
(`controlplane.fleet.records`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any, Protocol

from ..fleet.records import ProxyRecord, Refusal, WaitResult, evaluate
from ..model import Config, ProxyKind
from ..wakeups import Wakeups


class StatusSource(Protocol):
    """The fleet as the control plane sees it."""

    def proxies(self) -> list[ProxyRecord]:
        """Every proxy known, connected or not, sorted by group, kind and id."""
        ...

    async def wait(self, revision: int, timeout: float) -> WaitResult:
        """Return once no connected proxy is pending (each runs `revision` or refused it), or
        `timeout` seconds passed, whichever comes first."""
        ...


class DriftVerifier(Protocol):
    """What each proxy actually runs, against what the control plane intended."""

    def verify(self, config: Config, revision: int | None) -> dict[str, Any]:
        """Verify every proxy against `config` (revision `revision`); the result as JSON."""
        ...

    def last(self) -> dict[str, Any] | None:
        """The last verification's result (None before the first)."""
        ...


class NoVerifier:
    """A DriftVerifier for an API without proxies of its own: nothing to verify."""

    def verify(self, config: Config, revision: int | None) -> dict[str, Any]:
        return {
            "revision": revision,
            "at": time.time(),
            "proxies": [],
            "drifted": [],
            "unverified": [],
        }

    def last(self) -> dict[str, Any] | None:
        return None


class HeldBack(Protocol):
    """The node groups served their last-known-good while they refuse the newest revision."""

    def held_back(self) -> list[dict[str, Any]]:
        """Each such group: kind, group, the revision it is served and the one it refuses."""
        ...


class NothingHeldBack:
    """A HeldBack for an API without proxies of its own."""

    def held_back(self) -> list[dict[str, Any]]:
        return []


class InMemoryStatus:
    """A StatusSource kept in memory, fed by calls (tests, an API without proxies)."""

    def __init__(self) -> None:
        self._records: dict[str, ProxyRecord] = {}
        self._lock = threading.Lock()
        self._changed = Wakeups()

    def proxies(self) -> list[ProxyRecord]:
        with self._lock:
            return sorted(self._records.values(), key=lambda p: (p.group, p.kind, p.id))

    def connect(self, id: str, kind: ProxyKind, group: str) -> None:
        """A proxy appeared."""
        now = time.time()
        self._set(ProxyRecord(id, kind, group, None, True, now))

    def ack(self, id: str, revision: int) -> None:
        """A proxy runs `revision`."""
        now = time.time()
        self._update(id, lambda p: replace(p, revision=revision, last_ack_at=now, last_seen=now))

    def nack(self, id: str, revision: int, error: str) -> None:
        """A proxy refused `revision`, saying `error`."""
        now = time.time()
        self._update(
            id, lambda p: replace(p, last_nack=Refusal(revision, error, now), last_seen=now)
        )

    def disconnect(self, id: str) -> None:
        """A proxy went away."""
        self._update(id, lambda p: replace(p, connected=False, last_seen=time.time()))

    def waiting(self) -> int:
        """How many `wait` calls are waiting right now."""
        return len(self._changed)

    async def wait(self, revision: int, timeout: float) -> WaitResult:
        deadline = time.monotonic() + timeout
        while True:
            with self._changed.waiter() as waiter:
                result = evaluate(self.proxies(), revision)
                remaining = deadline - time.monotonic()
                if result.converged or not result.pending or remaining <= 0:
                    return result
                await waiter.wait(remaining)

    def _set(self, record: ProxyRecord) -> None:
        with self._lock:
            self._records[record.id] = record
        self._changed.wake()

    def _update(self, id: str, change: Any) -> None:
        with self._lock:
            self._records[id] = change(self._records[id])
        self._changed.wake()
