"""The ledger read in revision numbers: the `StatusSource` of a running server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from ..fleet.ledger import Ledger, ProxyStatus
from ..xds.types import WILDCARD_TYPES
from .records import ProxyRecord, Refusal, WaitResult
from .revisions import Published, RevisionIndex

POLL_SECONDS = 0.005
AGENT_SILENCE_SECONDS = 90.0
"""An HAProxy agent long-polls at most every 60 s; silent longer than this, it is gone."""


class LedgerStatus:
    """Each proxy of the ledger with the newest revision it runs and its last refusal."""

    def __init__(self, ledger: Ledger, index: RevisionIndex) -> None:
        self.ledger = ledger
        self.index = index

    def proxies(self) -> list[ProxyRecord]:
        records = [self._record(p) for p in self.ledger.proxies(connected_only=False)]
        return sorted(records, key=lambda r: (r.group, r.kind, r.id))

    async def wait(self, revision: int, timeout: float) -> WaitResult:
        """Return once every connected proxy concerned runs `revision` or refused it (so a
        refusal is reported with where every other proxy stands), or after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            published = self.index.covering(revision) is not None
            result = self.evaluate(revision)
            if published and not result.pending:
                return result
            if time.monotonic() >= deadline:
                return result if published else WaitResult(revision, False, result.proxies)
            await asyncio.sleep(POLL_SECONDS)

    def evaluate(self, revision: int) -> WaitResult:
        """Where the connected proxies of the groups `revision` concerns stand (those of the
        revision pushed in its place when it was coalesced away)."""
        covering = self.index.covering(revision)
        concerned = self.index.groups(covering) if covering is not None else set()
        records = [r for r in self.proxies() if r.connected and (r.kind, r.group) in concerned]
        return WaitResult(revision, all(r.runs(revision) for r in records), records)

    def _record(self, proxy: ProxyStatus) -> ProxyRecord:
        published = self.index.revisions(proxy.kind, proxy.group)
        running = None
        if _started(proxy):
            running = next((p.revision for p in published if _runs(proxy, p, published)), None)
            if running is None and proxy.last_ran is not None:
                ran = proxy.last_ran
                running = next((p.revision for p in published if ran in p.versions), None)
        acks = [t.acked_at for t in proxy.types.values() if t.acked_at is not None]
        return ProxyRecord(
            id=proxy.node_id,
            kind=proxy.kind,
            group=proxy.group,
            revision=running,
            connected=proxy.connected and not _silent_agent(proxy),
            last_seen=proxy.last_seen,
            last_ack_at=max(acks, default=None),
            last_nack=self._refusal(proxy, published),
            detail=dict(proxy.detail),
            health=proxy.health,
        )

    @staticmethod
    def _refusal(proxy: ProxyStatus, published: list[Published]) -> Refusal | None:
        nacks = [t.last_nack for t in proxy.types.values() if t.last_nack is not None]
        if proxy.failure is not None:
            nacks.append(proxy.failure)
        if not nacks:
            return None
        nack = max(nacks, key=lambda n: n.at)
        # The refused push is the newest revision published to the group before the NACK.
        refused = next((p.revision for p in published if p.at <= nack.at), None)
        return Refusal(refused, nack.error, nack.at) if refused is not None else None


def _runs(proxy: ProxyStatus, wanted: Published, published: list[Published]) -> bool:
    """Whether `proxy` runs what `wanted` gave its group.

    Each of an Envoy's types is known to match some snapshots; after a NACK they match
    different ones (the refused type the previous snapshot, the others the refused one). The
    proxy then runs `wanted` when each type's content, known from a snapshot it matches, is
    what `wanted` gave that type.
    """
    if any(proxy.runs(v) for v in wanted.versions):
        return True
    if not proxy.types or proxy.down or len(wanted.versions) != 1:
        return False
    [version] = wanted.versions
    parts = wanted.parts.get(version)
    if parts is None:
        return False
    for type_url, state in proxy.types.items():
        held = (_parts(v, published) for v in state.snapshots)
        if not any(
            h is not None and type_url in h and h[type_url] == parts.get(type_url) for h in held
        ):
            return False
    return True


def _started(proxy: ProxyStatus) -> bool:
    """An Envoy that has not subscribed to the listeners and the clusters yet (it does once
    it starts: its bootstrap takes both over ADS) has not taken a configuration yet."""
    return proxy.kind != "envoy" or set(proxy.types) >= WILDCARD_TYPES


def _parts(version: str, published: list[Published]) -> Mapping[str, str] | None:
    """The parts of configuration `version`, from any revision that gave it."""
    return next((p.parts[version] for p in published if version in p.parts), None)


def _silent_agent(proxy: ProxyStatus) -> bool:
    """An agent-fed HAProxy that stopped polling: nothing tells the ledger it left."""
    return proxy.via_agent and time.time() - proxy.last_seen > AGENT_SILENCE_SECONDS
