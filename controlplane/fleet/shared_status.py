"""The status every replica answers alike: the `StatusSource` of replicas sharing a store.

Each replica keeps the standings of the proxies it holds (their streams, their agents' polls)
in its own `LedgerStatus`, and reports their records to the store, keyed by proxy id, under
its lease; every replica reads all the reports back and answers from them (each record's
`detail.replica` names the replica that reported it). A proxy reported
by several replicas (an Envoy that moved) is the one a live replica holds connected, else the
newest report. Reports of a replica whose lease ran out read as disconnected; those of a
replica gone for `forget_after` are dropped. Waits are woken by the reports' notifications
(LISTEN/NOTIFY on PostgreSQL) and by the local revision index, never by polling.

The same reports give a group's size across replicas (`members`), which `scope: group` limits
are divided by: the fleet compiles again when a read of the reports changes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from ..model import ProxyKind
from ..store import Report, Store
from ..wakeups import Wakeups
from .records import Health, ProxyRecord, Refusal, WaitResult
from .revisions import GroupKey
from .standing import AGENT_SILENCE_SECONDS, silent
from .status import LedgerStatus

log = logging.getLogger(__name__)

DEFAULT_LEASE = 10.0
"""Seconds a replica's reports stay live without its heartbeat (renewed every third of it)."""


def replica_name() -> str:
    """A name no other replica has: host, process and a random part (a restarted replica is
    a new one; the old one's reports expire with its lease)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class SharedStatus:
    """Every replica's proxies, as reported to `store`; this replica reports those of `local`.

    `start` (on the server's event loop) reads the reports once and starts reporting; `stop`
    ends it and lets the replica's lease run out at once, so the others read its proxies as
    disconnected.
    """

    def __init__(
        self,
        local: LedgerStatus,
        store: Store,
        replica: str | None = None,
        *,
        lease: float = DEFAULT_LEASE,
        forget_after: float = 3600.0,
    ) -> None:
        self.local = local
        self.store = store
        self.replica = replica or replica_name()
        self.lease = lease
        self.forget_after = forget_after
        self._groups: dict[GroupKey, dict[str, ProxyRecord]] = {}
        self._woken = Wakeups()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poke: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._readers: list[Callable[[], None]] = []
        self._unsubscribe = store.subscribe_reports(self._on_reports)
        self._cancel_index = local.index.observe(lambda _revision, _key: self._woken.wake())

    async def start(self) -> None:
        """Report what this replica holds, read every report, and keep both up to date."""
        self._loop = asyncio.get_running_loop()
        self._poke = asyncio.Event()
        await asyncio.to_thread(self.store.report, self.replica, self.lease, {}, True)
        await self._refresh()
        self._tasks = [
            asyncio.create_task(self._reporting(), name="status-reporting"),
            asyncio.create_task(self._reading(), name="status-reading"),
        ]

    async def stop(self) -> None:
        """Stop reporting and reading; the replica's lease ends now."""
        self._unsubscribe()
        self._cancel_index()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.store.report, self.replica, -1.0, {})

    @property
    def wakeups(self) -> Wakeups:
        """Woken whenever what `proxies` answers may have changed."""
        return self._woken

    # --- reading (StatusSource) ---

    def proxies(self) -> list[ProxyRecord]:
        now = time.time()
        records = [_as_of(r, now) for members in self._groups.values() for r in members.values()]
        return sorted(records, key=lambda r: (r.group, r.kind, r.id))

    def refusing(self, kind: ProxyKind) -> dict[str, list[ProxyRecord]]:
        """As `LedgerStatus.refusing`, over the proxies of every replica."""
        now = time.time()
        return {
            group: sorted((_as_of(r, now) for r in members.values()), key=lambda r: r.id)
            for (k, group), members in self._groups.items()
            if k == kind and any(r.last_nack is not None for r in members.values())
        }

    def evaluate(self, revision: int) -> WaitResult:
        """Where the connected proxies of the groups `revision` concerns stand (those of the
        revision pushed in its place when it was coalesced away)."""
        covering = self.local.index.covering(revision)
        concerned = self.local.index.groups(covering) if covering is not None else set()
        return self._result(revision, concerned)

    async def wait(self, revision: int, timeout: float) -> WaitResult:
        """As `LedgerStatus.wait`, over the proxies of every replica."""
        deadline = time.monotonic() + timeout
        while True:
            with self._woken.waiter() as waiter:
                covering = self.local.index.covering(revision)
                if covering is None:
                    result = WaitResult(revision, False, [])
                else:
                    result = self._result(revision, self.local.index.groups(covering))
                remaining = deadline - time.monotonic()
                if (covering is not None and not result.pending) or remaining <= 0:
                    return result
                await waiter.wait(min(remaining, _silence_due(result.pending)))

    def _result(self, revision: int, concerned: Iterable[GroupKey]) -> WaitResult:
        now = time.time()
        groups = self._groups
        records = [
            record
            for key in concerned
            for r in groups.get(key, {}).values()
            if (record := _as_of(r, now)).connected
        ]
        records.sort(key=lambda r: (r.group, r.kind, r.id))
        return WaitResult(revision, all(r.runs(revision) for r in records), records)

    def members(self, group: str) -> int:
        """The connected proxies of `group` (of every kind) on every replica: this replica's
        as its ledger knows them now, the others' as they reported them."""
        here = {p.node_id for p in self.local.ledger.proxies(group)}
        now = time.time()
        there = {
            r.id
            for (_, name), records in self._groups.items()
            if name == group
            for r in records.values()
            if r.detail.get("replica") != self.replica and r.id not in here
            if _as_of(r, now).connected
        }
        return len(here) + len(there)

    def on_read(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` (on the event loop) after each read of the reports, when `members`
        may have changed; returns the function that stops it."""
        self._readers.append(callback)
        return lambda: self._readers.remove(callback)

    # --- keeping up ---

    def _on_reports(self) -> None:
        """Some replica wrote reports (called from the store's thread)."""
        loop, poke = self._loop, self._poke
        if loop is not None and poke is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(poke.set)

    async def _reading(self) -> None:
        """Read the reports again after each notification, and every third of a lease (a
        lease may have run out, which nothing announces)."""
        assert self._poke is not None
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.lease / 3):
                    await self._poke.wait()
            self._poke.clear()
            try:
                await self._refresh()
            except Exception:
                log.exception("reading the proxies' reports failed; trying again")

    async def _refresh(self) -> None:
        reports = await asyncio.to_thread(self.store.reports)
        self._groups = _merged(reports)
        self._woken.wake()
        for callback in list(self._readers):
            callback()

    async def _reporting(self) -> None:
        """Report each change of what this replica's proxies run, and renew the lease."""
        unsent: dict[str, str | None] = {}
        beat_due = time.monotonic() + self.lease / 3
        forget_due = time.monotonic()
        while True:
            with self.local.wakeups.waiter() as waiter:
                changed = self.local.take_changed()
                unsent.update((n, None if r is None else _encode(r)) for n, r in changed.items())
                now = time.monotonic()
                if unsent or now >= beat_due:
                    try:
                        await self._report_once(unsent)
                        unsent = {}
                    except Exception:
                        log.exception("reporting the proxies' status failed; trying again")
                    beat_due = now + self.lease / 3
                if now >= forget_due:
                    forget_due = now + min(self.forget_after / 2, 60.0)
                    with contextlib.suppress(Exception):
                        await asyncio.to_thread(self.store.forget_replicas, self.forget_after)
                await waiter.wait(max(0.0, beat_due - time.monotonic()))

    async def _report_once(self, bodies: Mapping[str, str | None]) -> None:
        await asyncio.to_thread(self.store.report, self.replica, self.lease, dict(bodies))


def _merged(reports: list[Report]) -> dict[GroupKey, dict[str, ProxyRecord]]:
    """Per (kind, group), per proxy id, the report that says best where the proxy stands."""
    best: dict[str, tuple[tuple[bool, float], ProxyRecord]] = {}
    for report in reports:
        try:
            record = _decode(report.body)
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("ignoring the report of %s by %s: %s", report.subject, report.replica, exc)
            continue
        record = replace(record, detail={**record.detail, "replica": report.replica})
        if not report.live:
            record = replace(record, connected=False)
        rank = (record.connected, report.written_at)
        known = best.get(record.id)
        if known is None or rank > known[0]:
            best[record.id] = (rank, record)
    groups: dict[GroupKey, dict[str, ProxyRecord]] = {}
    for _, record in best.values():
        groups.setdefault((record.kind, record.group), {})[record.id] = record
    return groups


def _as_of(record: ProxyRecord, now: float) -> ProxyRecord:
    """`record` read at `now`: an agent that stopped polling counts as gone."""
    if record.connected and silent(_via_agent(record), record.last_seen, now):
        return replace(record, connected=False)
    return record


def _via_agent(record: ProxyRecord) -> bool:
    return record.detail.get("via") == "agent"


def _silence_due(pending: list[ProxyRecord]) -> float:
    """Seconds until an agent among `pending` counts as gone for its silence (a day: none)."""
    seen = [r.last_seen for r in pending if _via_agent(r)]
    if not seen:
        return 86400.0
    return max(0.001, min(seen) + AGENT_SILENCE_SECONDS - time.time())


def _encode(record: ProxyRecord) -> str:
    return json.dumps(record.as_json(), sort_keys=True, separators=(",", ":"))


def _decode(text: str) -> ProxyRecord:
    data: dict[str, Any] = json.loads(text)
    nack, health = data.pop("last_nack", None), data.pop("health", None)
    return ProxyRecord(
        **data,
        last_nack=Refusal(**nack) if nack is not None else None,
        health=Health(**health) if health is not None else None,
    )
