"""Where one proxy stands: the newest revision it runs and the revision it last refused,
read from its ledger entry and what the recent revisions gave its (kind, group).

Computed once per change of the proxy (or of what its group was given), by lookups in the
group's `GroupRevisions`, never by scanning the fleet.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from ..model import ProxyKind
from ..xds.types import WILDCARD_TYPES
from .ledger import ProxyStatus
from .records import ProxyRecord, Refusal
from .revisions import GroupRevisions, Published

AGENT_SILENCE_SECONDS = 90.0
"""An HAProxy agent long-polls at most every 60 s; silent longer than this, it is gone."""


@dataclass(frozen=True, slots=True)
class Standing:
    """One proxy's place with respect to the revisions: who it is, whether it is connected
    (as its streams or polls say; a silent agent is told apart at read time), the newest
    revision it runs (`revision`, None before its first), its last refusal, and what it
    holds, to tell whether a newly published revision can change any of this."""

    kind: ProxyKind
    group: str
    connected: bool
    via_agent: bool
    down: bool
    revision: int | None
    refusal: Refusal | None
    holds: frozenset[str]
    """Versions it runs entirely (or last ran entirely)."""
    held_parts: tuple[tuple[str, frozenset[str]], ...]
    """Per type, the versions of that type's part it holds (empty unless every type has one)."""
    matched: frozenset[str]
    """Versions some of its types match: recording one tells the parts those types hold."""

    def runs(self, revision: int) -> bool:
        return not self.down and self.revision is not None and self.revision >= revision

    def refused(self, revision: int) -> bool:
        return (
            not self.runs(revision)
            and self.refusal is not None
            and self.refusal.revision >= revision
        )

    def may_run(self, published: Published) -> bool:
        """Whether `published`, newly recorded for its group, may be what it runs."""
        if (self.holds | self.matched) & published.versions:
            return True
        if not self.held_parts or len(published.versions) != 1:
            return False
        [version] = published.versions
        parts = published.parts.get(version)
        return parts is not None and _parts_match(self.held_parts, parts)


def standing_of(proxy: ProxyStatus, view: GroupRevisions) -> Standing:
    """Where `proxy` stands, given what its (kind, group) was given (`view`)."""
    entirely, held_parts = _holdings(proxy, view)
    revision = _running(proxy, view, entirely, held_parts) if _started(proxy) else None
    holds = entirely | {proxy.last_ran} if proxy.last_ran is not None else entirely
    return Standing(
        kind=proxy.kind,
        group=proxy.group,
        connected=proxy.connected,
        via_agent=proxy.via_agent,
        down=proxy.down,
        revision=revision,
        refusal=_refusal(proxy, view.published),
        holds=holds,
        held_parts=held_parts,
        matched=frozenset(v for state in proxy.types.values() for v in state.snapshots),
    )


def record_of(proxy: ProxyStatus, standing: Standing, now: float | None = None) -> ProxyRecord:
    """The status record of `proxy`, whose standing is `standing`."""
    acks = [t.acked_at for t in proxy.types.values() if t.acked_at is not None]
    return ProxyRecord(
        id=proxy.node_id,
        kind=proxy.kind,
        group=proxy.group,
        revision=standing.revision,
        connected=proxy.connected and not silent(proxy.via_agent, proxy.last_seen, now),
        last_seen=proxy.last_seen,
        last_ack_at=max(acks, default=None),
        last_nack=standing.refusal,
        detail=dict(proxy.detail),
        health=proxy.health,
    )


def silent(via_agent: bool, last_seen: float, now: float | None = None) -> bool:
    """An agent-fed HAProxy that stopped polling: nothing tells the ledger it left."""
    return via_agent and (now if now is not None else time.time()) - last_seen > (
        AGENT_SILENCE_SECONDS
    )


def _holdings(
    proxy: ProxyStatus, view: GroupRevisions
) -> tuple[frozenset[str], tuple[tuple[str, frozenset[str]], ...]]:
    """The versions `proxy` runs entirely (every type matches them), and per type the part
    versions it holds (when every type holds some)."""
    holds: set[str] = set()
    held_parts: list[tuple[str, frozenset[str]]] = []
    if proxy.types and not proxy.down:
        states = list(proxy.types.values())
        common = set(states[0].snapshots)
        for state in states[1:]:
            common.intersection_update(state.snapshots)
        holds |= common
        for type_url, state in proxy.types.items():
            parts = (view.parts.get(v) for v in state.snapshots)
            held = frozenset(p[type_url] for p in parts if p is not None and type_url in p)
            if not held:
                held_parts = []
                break
            held_parts.append((type_url, held))
    return frozenset(holds), tuple(held_parts)


def _running(
    proxy: ProxyStatus,
    view: GroupRevisions,
    entirely: frozenset[str],
    held_parts: tuple[tuple[str, frozenset[str]], ...],
) -> int | None:
    """The newest revision whose configuration `proxy` runs.

    It runs a revision when every type it has matches one of the revision's versions, or
    (after a NACK left its types matching different snapshots) when each type's content,
    known from a snapshot it matches, is what the revision gave that type. Otherwise it is
    the revision of the last version it ran entirely.
    """
    best = max((r for v in entirely if (r := view.newest.get(v)) is not None), default=None)
    if held_parts:
        for published in view.published:
            if best is not None and published.revision <= best:
                break
            if len(published.versions) != 1:
                continue
            [version] = published.versions
            parts = published.parts.get(version)
            if parts is not None and _parts_match(held_parts, parts):
                best = published.revision
                break
    if best is None and proxy.last_ran is not None:
        best = view.newest.get(proxy.last_ran)
    return best


def _parts_match(
    held_parts: tuple[tuple[str, frozenset[str]], ...], parts: Mapping[str, str]
) -> bool:
    return all(parts.get(type_url) in held for type_url, held in held_parts)


def _refusal(proxy: ProxyStatus, published: tuple[Published, ...]) -> Refusal | None:
    nacks = [t.last_nack for t in proxy.types.values() if t.last_nack is not None]
    if proxy.failure is not None:
        nacks.append(proxy.failure)
    if not nacks:
        return None
    nack = max(nacks, key=lambda n: n.at)
    # The refused push is the newest revision published to the group before the NACK.
    refused = next((p.revision for p in published if p.at <= nack.at), None)
    return Refusal(refused, nack.error, nack.at) if refused is not None else None


def _started(proxy: ProxyStatus) -> bool:
    """An Envoy that has not subscribed to the listeners and the clusters yet (it does once
    it starts: its bootstrap takes both over ADS) has not taken a configuration yet."""
    return proxy.kind != "envoy" or set(proxy.types) >= WILDCARD_TYPES
