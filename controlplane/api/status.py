"""Who runs what: the seam the API reads the fleet through, and an in-memory implementation.

The xDS ledger backs `StatusSource` in a running server; `InMemoryStatus` serves tests and
an API without proxies.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

from ..model import ProxyKind


@dataclass(frozen=True)
class Refusal:
    """A revision a proxy refused (NACK), with the proxy's error text as it said it."""

    revision: int
    error: str
    at: float


@dataclass(frozen=True)
class Health:
    """What a proxy's supervisor last saw of its process: `down` (`reason` says what died),
    `restarted`, or `restart failed` (`error` says why; it is still down), at `at`."""

    state: str
    at: float
    reason: str
    error: str | None = None

    @property
    def down(self) -> bool:
        return self.state != "restarted"


@dataclass(frozen=True)
class ProxyRecord:
    """One proxy as the control plane last saw it.

    `revision`: the newest revision whose configuration for the proxy's group it runs, every
    part of it (None before its first ACK). A revision that changed nothing for a group counts
    as run by that group's proxies once they run the one before it. When a refused change left
    it between two revisions (an Envoy that took the new clusters but refused their
    endpoints), it is the last revision it ran entirely. A proxy that is `down` (see `health`)
    runs nothing, whatever its revision says it ran.
    """

    id: str
    kind: ProxyKind
    group: str
    revision: int | None
    connected: bool
    last_seen: float
    last_ack_at: float | None = None
    last_nack: Refusal | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    health: Health | None = None

    @property
    def down(self) -> bool:
        """Its process died and has not been restarted (yet)."""
        return self.health is not None and self.health.down

    def runs(self, revision: int) -> bool:
        """Whether the proxy runs `revision` or a newer one."""
        return not self.down and self.revision is not None and self.revision >= revision

    def refused(self, revision: int) -> bool:
        """Whether the proxy refused `revision` (or a newer one) and does not run it."""
        return (
            not self.runs(revision)
            and self.last_nack is not None
            and self.last_nack.revision >= revision
        )

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class WaitResult:
    """The answer to "does every connected proxy run revision N?".

    `proxies`: the connected proxies concerned; `converged` when each runs N (or newer);
    otherwise the ones that do not, with `refused` the ones that NACKed it.
    """

    revision: int
    converged: bool
    proxies: list[ProxyRecord]

    @property
    def acked(self) -> list[ProxyRecord]:
        return [p for p in self.proxies if p.runs(self.revision)]

    @property
    def refused(self) -> list[ProxyRecord]:
        return [p for p in self.proxies if p.refused(self.revision)]

    @property
    def pending(self) -> list[ProxyRecord]:
        return [
            p for p in self.proxies if not p.runs(self.revision) and not p.refused(self.revision)
        ]


class StatusSource(Protocol):
    """The fleet as the control plane sees it."""

    def proxies(self) -> list[ProxyRecord]:
        """Every proxy known, connected or not, sorted by group, kind and id."""
        ...

    async def wait(self, revision: int, timeout: float) -> WaitResult:
        """Return once no connected proxy is pending (each runs `revision` or refused it), or
        `timeout` seconds passed, whichever comes first."""
        ...


def evaluate(records: list[ProxyRecord], revision: int) -> WaitResult:
    """Where the connected proxies stand with respect to `revision`."""
    connected = [p for p in records if p.connected]
    return WaitResult(revision, all(p.runs(revision) for p in connected), connected)


class InMemoryStatus:
    """A StatusSource kept in memory, fed by calls (tests, an API without proxies)."""

    def __init__(self) -> None:
        self._records: dict[str, ProxyRecord] = {}
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

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

    async def wait(self, revision: int, timeout: float) -> WaitResult:
        deadline = time.monotonic() + timeout
        loop = asyncio.get_running_loop()
        while True:
            event = asyncio.Event()
            with self._lock:
                self._waiters.append((loop, event))
            try:
                result = evaluate(self.proxies(), revision)
                remaining = deadline - time.monotonic()
                if result.converged or not result.pending or remaining <= 0:
                    return result
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), remaining)
            finally:
                with self._lock:
                    self._waiters.remove((loop, event))

    def _set(self, record: ProxyRecord) -> None:
        with self._lock:
            self._records[record.id] = record
        self._wake()

    def _update(self, id: str, change: Any) -> None:
        with self._lock:
            self._records[id] = change(self._records[id])
        self._wake()

    def _wake(self) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # that waiter's loop has closed
                loop.call_soon_threadsafe(event.set)
