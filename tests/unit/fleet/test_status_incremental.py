"""The status kept incrementally reads exactly as the whole ledger read afresh would.

`reference_records` below is the definition (the status as it was computed before it was kept
incrementally: every proxy's record from a copy of its ledger entry and every revision of its
group). Random sequences of what streams, HAProxy managers and the fleet tell the ledger and
the index are played; after each step the status's records, its gauges and its open waits
must agree with the definition: a wait has returned exactly when no proxy concerned is still
on its way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.fleet import LedgerStatus, RevisionIndex
from controlplane.fleet.ledger import Ledger, ProxyStatus
from controlplane.fleet.records import Health, ProxyRecord, Refusal
from controlplane.fleet.revisions import Published
from controlplane.fleet.standing import AGENT_SILENCE_SECONDS
from controlplane.xds import types

TYPES = (types.CLUSTER, types.ENDPOINT, types.LISTENER, types.ROUTE)
GROUPS = ("edge", "edge", "edge", "inner")
ENVOYS = ("e1", "e2", "e3")
HAPROXIES = ("h1", "h2")
SNAPSHOTS = ("aaaa", "baaa", "abaa", "bbaa")
"""Snapshot versions name their parts, as content hashes do: the letter of each type's part
(clusters, endpoints, listeners, routes); two snapshots share the parts whose letters agree."""
PRELUDE: list[tuple[Any, ...]] = [
    ("connect", "e1", "edge"),
    ("subscribe_all", "e1"),
    ("connect", "e2", "edge"),
    ("subscribe_all", "e2"),
    ("publish", [("edge", "aaaa")], True),
    ("take", "e1", "aaaa", list(TYPES)),
]
"""Where most examples start: two Envoys of a group, one of which runs its first revision."""
BETWEEN = [
    ("publish", [("edge", "bbaa")], True),
    ("take", "e1", "bbaa", [types.ENDPOINT, types.LISTENER, types.ROUTE]),
    ("sent", "e1", types.CLUSTER, "bbaa"),
    ("nacked", "e1", types.CLUSTER, "bbaa"),
]
"""...and then took all of the next revision but its refused clusters: each type matches
another snapshot, so which revisions it runs is known from their parts."""


# --- the definition: every record computed afresh from copies ---


def reference_records(ledger: Ledger, index: RevisionIndex) -> list[ProxyRecord]:
    records = [_record(p, index) for p in ledger.proxies(connected_only=False)]
    return sorted(records, key=lambda r: (r.group, r.kind, r.id))


def reference_pending(ledger: Ledger, index: RevisionIndex, revision: int) -> bool | None:
    """None: not published yet; else whether a connected proxy concerned is on its way."""
    covering = index.covering(revision)
    if covering is None:
        return None
    concerned = index.groups(covering)
    return any(
        r.connected
        and (r.kind, r.group) in concerned
        and not r.runs(revision)
        and not r.refused(revision)
        for r in reference_records(ledger, index)
    )


def _record(proxy: ProxyStatus, index: RevisionIndex) -> ProxyRecord:
    published = index.revisions(proxy.kind, proxy.group)
    running = None
    if proxy.kind != "envoy" or set(proxy.types) >= types.WILDCARD_TYPES:
        running = next((p.revision for p in published if _runs(proxy, p, published)), None)
        if running is None and proxy.last_ran is not None:
            ran = proxy.last_ran
            running = next((p.revision for p in published if ran in p.versions), None)
    acks = [t.acked_at for t in proxy.types.values() if t.acked_at is not None]
    silent = proxy.via_agent and time.time() - proxy.last_seen > AGENT_SILENCE_SECONDS
    return ProxyRecord(
        id=proxy.node_id,
        kind=proxy.kind,
        group=proxy.group,
        revision=running,
        connected=proxy.connected and not silent,
        last_seen=proxy.last_seen,
        last_ack_at=max(acks, default=None),
        last_nack=_refusal(proxy, published),
        detail=dict(proxy.detail),
        health=proxy.health,
    )


def _refusal(proxy: ProxyStatus, published: list[Published]) -> Refusal | None:
    nacks = [t.last_nack for t in proxy.types.values() if t.last_nack is not None]
    if proxy.failure is not None:
        nacks.append(proxy.failure)
    if not nacks:
        return None
    nack = max(nacks, key=lambda n: n.at)
    refused = next((p.revision for p in published if p.at <= nack.at), None)
    return Refusal(refused, nack.error, nack.at) if refused is not None else None


def _runs(proxy: ProxyStatus, wanted: Published, published: list[Published]) -> bool:
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


def _parts(version: str, published: list[Published]) -> Mapping[str, str] | None:
    return next((p.parts[version] for p in published if version in p.parts), None)


# --- what the ledger and the index are told ---


def part(snapshot: str, type_url: str) -> str:
    """The version of a type's part in a snapshot."""
    return f"{types.short_name(type_url)}-{snapshot[TYPES.index(type_url)]}"


def parts_of(snapshot: str) -> dict[str, str]:
    return {t: part(snapshot, t) for t in TYPES}


envoy = st.sampled_from(ENVOYS)
haproxy = st.sampled_from(HAPROXIES)
type_url = st.sampled_from(TYPES)
snapshot = st.sampled_from(SNAPSHOTS)
group = st.sampled_from(GROUPS)

operations = st.one_of(
    st.tuples(st.just("connect"), envoy, group),
    st.tuples(st.just("disconnect"), envoy),
    st.tuples(st.just("subscribe_all"), envoy),
    st.tuples(st.just("subscribed"), envoy, type_url),
    st.tuples(st.just("take"), envoy, snapshot, st.lists(type_url, min_size=1, max_size=4)),
    st.tuples(st.just("sent"), envoy, type_url, snapshot),
    st.tuples(st.just("nacked"), envoy, type_url, snapshot),
    st.tuples(st.just("synced"), envoy, type_url, snapshot),
    st.tuples(st.just("apply"), haproxy, group, snapshot, st.booleans()),
    st.tuples(st.just("health"), haproxy, group, st.booleans(), snapshot),
    st.tuples(st.just("poll"), haproxy, group, st.one_of(st.none(), snapshot)),
    st.tuples(st.just("refused"), envoy, group, snapshot),
    st.tuples(
        st.just("publish"),
        st.lists(st.tuples(group, snapshot), min_size=1, max_size=3),
        st.booleans(),
    ),
)


class World:
    def __init__(self) -> None:
        self.ledger, self.index = Ledger(), RevisionIndex()
        self.revision = 0

    def play(self, op: tuple[Any, ...]) -> None:
        ledger, name = self.ledger, op[0]
        if name == "connect":
            ledger.connect(op[1], op[2], "envoy")
        elif name == "disconnect":
            ledger.disconnect(op[1])
        elif name == "subscribe_all":
            for t in TYPES:
                ledger.subscribed(op[1], t)
        elif name == "subscribed":
            ledger.subscribed(op[1], op[2])
        elif name == "take":
            _, node, snap, chosen = op
            for t in chosen:
                ledger.sent(node, t, part(snap, t), snap)
                ledger.acked(node, t, part(snap, t))
                ledger.synced(node, t, snap)
        elif name == "sent":
            ledger.sent(op[1], op[2], part(op[3], op[2]), op[3])
        elif name == "nacked":
            ledger.nacked(op[1], op[2], part(op[3], op[2]), "refused")
        elif name == "synced":
            ledger.synced(op[1], op[2], op[3])
        elif name == "apply":
            _, node, grp, snap, ok = op
            ledger.record_apply(node, grp, "haproxy", snap, ok, None if ok else "bad")
        elif name == "health":
            _, node, grp, down, snap = op
            state = "down" if down else "restarted"
            ledger.record_health(node, grp, "haproxy", Health(state, time.time(), "x"), snap)
        elif name == "poll":
            _, node, grp, running = op
            ledger.poll_started(node, grp, running)
        elif name == "refused":
            _, node, grp, snap = op
            ledger.refused(node, grp, "envoy", snap, "could not compile")
        elif name == "publish":
            _, entries, complete = op
            self.revision += 1
            for grp, snap in entries:
                self.index.record(self.revision, "envoy", grp, snap, parts_of(snap))
                self.index.record(self.revision, "haproxy", grp, snap)
            if complete:
                self.index.complete(self.revision)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([[], PRELUDE, PRELUDE + BETWEEN]), st.lists(operations, max_size=30))
def test_the_kept_status_reads_as_the_ledger_read_afresh(
    prelude: list[tuple[Any, ...]], steps: list[tuple[Any, ...]]
) -> None:
    ops = [*prelude, *steps]

    async def scenario() -> None:
        world = World()
        status = LedgerStatus(world.ledger, world.index)
        waits: dict[int, asyncio.Task[Any]] = {}
        for op in ops:
            world.play(op)
            for revision in range(1, world.revision + 1):
                if revision not in waits:
                    waits[revision] = asyncio.create_task(status.wait(revision, 60))
            for _ in range(4):  # the wake-ups travel through the loop
                await asyncio.sleep(0)

            records = reference_records(world.ledger, world.index)
            assert status.proxies() == records, op
            for kind in ("envoy", "haproxy"):
                groups = {r.group for r in records if r.kind == kind and r.last_nack is not None}
                assert status.refusing(kind) == {
                    g: [r for r in records if (r.kind, r.group) == (kind, g)] for g in groups
                }, op
            for revision, task in list(waits.items()):
                pending = reference_pending(world.ledger, world.index, revision)
                assert task.done() == (pending is False), (op, revision, pending)
                if task.done():
                    result = task.result()
                    assert result == status.evaluate(revision)
                    del waits[revision]  # opened again at the next step
            head = world.index.latest_complete()
            behind = {(r.kind, r.group): 0 for r in reference_records(world.ledger, world.index)}
            if head is not None:
                concerned = world.index.groups(head)
                for r in reference_records(world.ledger, world.index):
                    if r.connected and (r.kind, r.group) in concerned and not r.runs(head):
                        behind[(r.kind, r.group)] += 1
            gauges = status.gauges()
            assert {k: b for k, (_, b) in gauges.items() if b} == {
                k: b for k, b in behind.items() if b
            }
        for task in waits.values():
            task.cancel()
        await asyncio.gather(*waits.values(), return_exceptions=True)

    asyncio.run(scenario())
