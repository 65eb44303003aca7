"""LedgerStatus: the ledger's versions read as revision numbers, refusals, and waiting.

The ledger is fed here the way the xDS streams and the HAProxy managers feed it (`synced`,
`nacked`, `record_apply`), without proxies: what is tested is the reading.
"""

from __future__ import annotations

import asyncio

import pytest

from controlplane.fleet import LedgerStatus, RevisionIndex
from controlplane.fleet.ledger import Ledger, ProxyStatus
from controlplane.fleet.revisions import GroupRevisions
from controlplane.fleet.standing import Standing
from controlplane.xds import types

CDS, EDS, LDS, RDS = types.CLUSTER, types.ENDPOINT, types.LISTENER, types.ROUTE
TYPES = (CDS, EDS, LDS, RDS)
ENVOY = "envoy-1"
HAPROXY = "haproxy-1"


def parts(**changed: str) -> dict[str, str]:
    """An Envoy snapshot's per-type versions: `<type>-1` unless given (by short name)."""
    return {t: changed.get(types.short_name(t), f"{types.short_name(t)}-1") for t in TYPES}


def connect_envoy(ledger: Ledger, group: str = "edge") -> None:
    ledger.connect(ENVOY, group, "envoy")
    for t in TYPES:
        ledger.subscribed(ENVOY, t)


def envoy_takes(ledger: Ledger, snapshot: str, types: tuple[str, ...] = TYPES) -> None:
    """The Envoy ACKed what `snapshot` selects for `types`."""
    for t in types:
        ledger.sent(ENVOY, t, f"{snapshot}/{t}")
        ledger.acked(ENVOY, t, f"{snapshot}/{t}")
        ledger.synced(ENVOY, t, snapshot)


def publish(
    index: RevisionIndex, revision: int, envoy: str, haproxy: str | None = None, **envoy_parts: str
) -> None:
    """Revision `revision` gave the edge Envoys `envoy` (and its HAProxies `haproxy`)."""
    index.record(revision, "envoy", "edge", envoy, parts(**envoy_parts))
    if haproxy is not None:
        index.record(revision, "haproxy", "edge", haproxy)
    index.complete(revision)


def record(status: LedgerStatus, node: str) -> dict[str, object]:
    [found] = [r for r in status.proxies() if r.id == node]
    return found.as_json()


def test_a_proxy_reads_as_the_newest_revision_it_runs() -> None:
    ledger, index = Ledger(), RevisionIndex()
    status = LedgerStatus(ledger, index)
    publish(index, 1, "e1", "h1")
    publish(index, 2, "e1", "h2")  # revision 2 left the Envoys unchanged
    publish(index, 3, "e3", "h3", rds="rds-3")
    connect_envoy(ledger)
    assert record(status, ENVOY)["revision"] is None  # nothing ACKed yet

    envoy_takes(ledger, "e1")
    ledger.record_apply(HAPROXY, "edge", "haproxy", "h3", True, detail={"mode": "runtime"})

    assert [(r.id, r.kind, r.revision) for r in status.proxies()] == [
        (ENVOY, "envoy", 2),
        (HAPROXY, "haproxy", 3),
    ]
    assert record(status, HAPROXY)["detail"] == {"mode": "runtime"}
    assert record(status, ENVOY)["last_ack_at"] is not None
    envoy_takes(ledger, "e3")
    assert record(status, ENVOY)["revision"] == 3


def test_an_envoy_nack_is_a_refusal_and_the_envoy_still_runs_the_revision_before() -> None:
    ledger, index = Ledger(), RevisionIndex()
    status = LedgerStatus(ledger, index)
    publish(index, 1, "e1")
    connect_envoy(ledger)
    envoy_takes(ledger, "e1")
    publish(index, 2, "e2", rds="rds-2")

    # The stream marks the unchanged types as matching the new snapshot; RDS was refused.
    envoy_takes(ledger, "e2", (CDS, EDS, LDS))
    ledger.sent(ENVOY, RDS, "e2/rds")
    ledger.nacked(ENVOY, RDS, "e2/rds", "regex too big")

    [proxy] = status.proxies()
    assert proxy.revision == 1
    assert proxy.last_nack is not None
    assert (proxy.last_nack.revision, proxy.last_nack.error) == (2, "regex too big")
    assert proxy.refused(2) and not proxy.runs(2)


def test_an_envoy_between_two_revisions_reads_as_the_last_one_it_ran_entirely() -> None:
    ledger, index = Ledger(), RevisionIndex()
    status = LedgerStatus(ledger, index)
    publish(index, 1, "e1")
    connect_envoy(ledger)
    assert status.proxies()[0].revision is None
    envoy_takes(ledger, "e1")
    publish(index, 2, "e2", cds="cds-2", rds="rds-2")

    envoy_takes(ledger, "e2", (CDS, EDS, LDS))  # took the new clusters...
    ledger.nacked(ENVOY, RDS, "e2/rds", "refused")  # ...and refused the new routes

    [proxy] = status.proxies()
    assert proxy.revision == 1
    assert proxy.refused(2) and not proxy.runs(2)


def test_a_type_sent_anew_no_longer_matches_until_acked() -> None:
    """The stream may find a type's content matching a new snapshot before the client asks
    for more of it (new clusters bring new endpoint names): sending the content of that
    snapshot takes the match back, and a refusal leaves the Envoy behind."""
    ledger, index = Ledger(), RevisionIndex()
    status = LedgerStatus(ledger, index)
    publish(index, 1, "e1")
    connect_envoy(ledger)
    envoy_takes(ledger, "e1")
    publish(index, 2, "e2", cds="cds-2", eds="eds-2")

    envoy_takes(ledger, "e2", (CDS, LDS, RDS))
    ledger.synced(ENVOY, EDS, "e2")  # its old endpoints are all e2 selects... for now
    assert status.proxies()[0].runs(2)
    ledger.sent(ENVOY, EDS, "e2/eds", "e2")  # the new cluster's endpoints are asked for
    assert not status.proxies()[0].runs(2)
    ledger.nacked(ENVOY, EDS, "e2/eds", "malformed IP address")

    [proxy] = status.proxies()
    assert (proxy.revision, proxy.refused(2)) == (1, True)


def test_a_haproxy_refusal_names_the_revision_and_keeps_the_one_it_runs() -> None:
    ledger, index = Ledger(), RevisionIndex()
    status = LedgerStatus(ledger, index)
    publish(index, 1, "e1", "h1")
    ledger.record_apply(HAPROXY, "edge", "haproxy", "h1", True)
    publish(index, 2, "e2", "h2")
    ledger.record_apply(HAPROXY, "edge", "haproxy", "h2", False, "[ALERT] no such file")

    [proxy] = status.proxies()
    assert proxy.revision == 1
    assert proxy.last_nack is not None
    assert (proxy.last_nack.revision, proxy.last_nack.error) == (2, "[ALERT] no such file")


def test_wait_returns_only_once_the_revision_is_published() -> None:
    async def scenario() -> None:
        ledger, index = Ledger(), RevisionIndex()
        status = LedgerStatus(ledger, index)
        publish(index, 1, "e1")
        connect_envoy(ledger)
        envoy_takes(ledger, "e1")
        early = await status.wait(2, timeout=0.05)
        assert not early.converged and early.proxies == []

        waiting = asyncio.create_task(status.wait(2, timeout=5))
        index.record(2, "envoy", "edge", "e1", parts())  # what the Envoy runs already...
        await asyncio.sleep(0.05)
        assert not waiting.done()  # ...but revision 2 is not completely recorded yet
        index.record(2, "haproxy", "edge", "h2")
        index.complete(2)
        ledger.record_apply(HAPROXY, "edge", "haproxy", "h2", True)
        async with asyncio.timeout(5):
            result = await waiting
        assert result.converged and [p.revision for p in result.proxies] == [2, 2]

    asyncio.run(scenario())


def test_wait_reports_a_refusal_once_no_proxy_is_pending() -> None:
    async def scenario() -> None:
        ledger, index = Ledger(), RevisionIndex()
        status = LedgerStatus(ledger, index)
        publish(index, 1, "e1", "h1")
        connect_envoy(ledger)
        envoy_takes(ledger, "e1")
        ledger.record_apply(HAPROXY, "edge", "haproxy", "h1", True)
        publish(index, 2, "e2", "h2", rds="rds-2")

        waiting = asyncio.create_task(status.wait(2, timeout=5))
        envoy_takes(ledger, "e2", (CDS, EDS, LDS))
        ledger.nacked(ENVOY, RDS, "e2/rds", "refused")
        await asyncio.sleep(0.05)
        assert not waiting.done()  # the HAProxy has not answered yet
        ledger.record_apply(HAPROXY, "edge", "haproxy", "h2", True)
        async with asyncio.timeout(5):
            result = await waiting

        assert not result.converged
        assert [p.id for p in result.refused] == [ENVOY]
        assert [p.id for p in result.acked] == [HAPROXY]
        assert result.pending == []

    asyncio.run(scenario())


def test_waiting_for_a_coalesced_revision_waits_for_the_one_pushed_in_its_place() -> None:
    async def scenario() -> None:
        ledger, index = Ledger(), RevisionIndex()
        status = LedgerStatus(ledger, index)
        publish(index, 1, "e1")
        connect_envoy(ledger)
        envoy_takes(ledger, "e1")
        publish(index, 3, "e3", rds="rds-3")  # revision 2 was coalesced into 3

        behind = await status.wait(2, timeout=0.05)
        assert not behind.converged and [p.id for p in behind.pending] == [ENVOY]
        envoy_takes(ledger, "e3")
        caught_up = await status.wait(2, timeout=5)
        assert caught_up.converged and [p.revision for p in caught_up.proxies] == [3]

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("group", "connected"), [("inner", True), ("edge", False)], ids=["other group", "gone"]
)
def test_wait_leaves_out_other_groups_and_disconnected_proxies(group: str, connected: bool) -> None:
    ledger, index = Ledger(), RevisionIndex()
    status = LedgerStatus(ledger, index)
    publish(index, 1, "e1")  # to the edge group only
    connect_envoy(ledger, group)
    if not connected:
        ledger.disconnect(ENVOY)

    result = asyncio.run(status.wait(1, timeout=0.05))

    assert result.converged and result.proxies == []
    assert [r.id for r in status.proxies()] == [ENVOY]


def test_an_envoy_runs_nothing_before_it_subscribed_to_listeners_and_clusters() -> None:
    """Envoy asks for clusters (and their endpoints) first, listeners once they are warm: an
    Envoy that ACKed the clusters alone has no listener yet, so it is not current."""
    ledger, index = Ledger(), RevisionIndex()
    status = LedgerStatus(ledger, index)
    publish(index, 1, "e1")
    ledger.connect(ENVOY, "edge", "envoy")
    for t in (CDS, EDS):
        ledger.subscribed(ENVOY, t)
    envoy_takes(ledger, "e1", (CDS, EDS))
    assert status.proxies()[0].revision is None

    ledger.subscribed(ENVOY, LDS)
    envoy_takes(ledger, "e1", (LDS,))
    assert status.proxies()[0].revision == 1


def test_an_open_wait_costs_nothing_while_nothing_changes_and_one_standing_per_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a thousand Envoys behind, a wait computes no standing while none of them says
    anything, and one standing when one of them takes the revision: never the fleet."""
    from controlplane.fleet import status as status_module

    computed: list[str] = []
    real = status_module.standing_of

    def counting(proxy: ProxyStatus, view: GroupRevisions) -> Standing:
        computed.append(proxy.node_id)
        return real(proxy, view)

    monkeypatch.setattr(status_module, "standing_of", counting)

    async def scenario() -> None:
        ledger, index = Ledger(), RevisionIndex()
        status = LedgerStatus(ledger, index)
        publish(index, 1, "e1")
        for i in range(1000):
            ledger.connect(f"envoy-{i}", "edge", "envoy")
            for t in TYPES:
                ledger.subscribed(f"envoy-{i}", t)
        waiting = asyncio.create_task(status.wait(1, timeout=30))
        await asyncio.sleep(0.01)
        computed.clear()

        await asyncio.sleep(0.2)  # nothing changes
        assert computed == [] and not waiting.done()

        for i in range(999):
            for t in TYPES:
                ledger.sent(f"envoy-{i}", t, f"e1/{t}", "e1")
                ledger.acked(f"envoy-{i}", t, f"e1/{t}")
                ledger.synced(f"envoy-{i}", t, "e1")
        await asyncio.sleep(0.01)
        computed.clear()
        for t in TYPES:
            ledger.sent("envoy-999", t, f"e1/{t}", "e1")
            ledger.acked("envoy-999", t, f"e1/{t}")
            ledger.synced("envoy-999", t, "e1")
        async with asyncio.timeout(5):
            result = await waiting

        assert result.converged and len(result.proxies) == 1000
        assert set(computed) == {"envoy-999"}
        print(f"standings computed for the last ACK: {len(computed)}")

    asyncio.run(scenario())
