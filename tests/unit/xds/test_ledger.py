"""The ledger: who runs what, ACKs, NACKs and HAProxy applies."""

from __future__ import annotations

from controlplane.fleet.ledger import EVENTS_KEPT, HAPROXY_TYPE, Ledger
from controlplane.xds import types


def test_group_runs_only_when_every_connected_proxy_matches() -> None:
    ledger = Ledger()
    assert not ledger.group_runs("g", "v1")
    for node in ("e1", "e2"):
        ledger.connect(node, "g")
        ledger.subscribed(node, types.CLUSTER)
        ledger.sent(node, types.CLUSTER, "c1")
        ledger.acked(node, types.CLUSTER, "c1")
        ledger.synced(node, types.CLUSTER, "v1")
    ledger.record_apply("h1", "g", "haproxy", "v1", ok=True, detail={"reload": False})
    assert ledger.group_runs("g", "v1")
    assert ledger.lagging("g", "v1") == []

    ledger.record_apply("h1", "g", "haproxy", "v2", ok=False, error="bad map")
    h1 = ledger.get("h1")
    assert h1 is not None and h1.kind == "haproxy"
    applied = h1.types[HAPROXY_TYPE]
    assert applied.version_acked == "v1" and applied.last_nack is not None
    assert applied.last_nack.error == "bad map"
    assert ledger.lagging("g", "v2") == ["e1", "e2", "h1"]

    ledger.disconnect("e2")
    assert [p.node_id for p in ledger.proxies("g")] == ["e1", "h1"]
    assert [p.node_id for p in ledger.proxies("g", connected_only=False)] == ["e1", "e2", "h1"]
    assert ledger.group_runs("g", "v1")


def test_nack_keeps_the_last_good_version_and_the_error() -> None:
    ledger = Ledger()
    ledger.connect("e1", "g")
    ledger.sent("e1", types.ROUTE, "r1")
    ledger.acked("e1", types.ROUTE, "r1")
    ledger.sent("e1", types.ROUTE, "r2")
    ledger.nacked("e1", types.ROUTE, "r2", "invalid regex")
    status = ledger.get("e1")
    assert status is not None
    rds = status.types[types.ROUTE]
    assert rds.version_acked == "r1" and rds.version_sent == "r2"
    assert rds.last_nack is not None and rds.last_nack.version == "r2"
    assert [e.action for e in status.events] == ["sent", "ack", "sent", "nack"]


def test_several_streams_of_one_node_count_once() -> None:
    ledger = Ledger()
    ledger.connect("e1", "g")
    ledger.connect("e1", "g")
    ledger.disconnect("e1")
    assert ledger.count("g") == 1
    ledger.disconnect("e1")
    assert ledger.count("g") == 0


def test_observers_hear_every_event_until_cancelled() -> None:
    ledger = Ledger()
    heard: list[tuple[str, str, str, str, dict[str, object]]] = []
    cancel = ledger.observe(
        lambda node, group, kind, event, detail: heard.append(
            (node, kind, event.action, event.version, detail)
        )
    )
    ledger.connect("e1", "g")
    ledger.sent("e1", types.CLUSTER, "c1")
    ledger.acked("e1", types.CLUSTER, "c1")
    ledger.record_apply("h1", "g", "haproxy", "v1", ok=False, error="x", detail={"mode": "reload"})
    cancel()
    ledger.nacked("e1", types.CLUSTER, "c2", "bad")
    assert heard == [
        ("e1", "envoy", "sent", "c1", {}),
        ("e1", "envoy", "ack", "c1", {}),
        ("h1", "haproxy", "nack", "v1", {"mode": "reload"}),
    ]


def test_copies_are_independent() -> None:
    ledger = Ledger()
    ledger.connect("e1", "g")
    ledger.sent("e1", types.CLUSTER, "c1")
    copy = ledger.get("e1")
    assert copy is not None
    ledger.acked("e1", types.CLUSTER, "c1")
    assert copy.types[types.CLUSTER].version_acked is None
    assert len(copy.events) == 1


def test_history_keeps_the_last_events_oldest_first_one_record_per_version() -> None:
    """Each proxy keeps its last EVENTS_KEPT events; what happened (type, action, version) is
    one record shared by every proxy it happened to, each proxy keeping only when."""
    ledger = Ledger()
    for node in ("e1", "e2"):
        ledger.connect(node, "g")
    for n in range(EVENTS_KEPT + 3):
        for node in ("e1", "e2"):
            ledger.sent(node, types.CLUSTER, "".join(["c", str(n)]))  # a copy per stream
    first, second = ledger.get("e1"), ledger.get("e2")
    assert first is not None and second is not None
    events = list(first.events)
    assert [e.version for e in events] == [f"c{n}" for n in range(3, EVENTS_KEPT + 3)]
    assert [e.at for e in events] == sorted(e.at for e in events)
    assert all(a.version is b.version for a, b in zip(events, second.events, strict=True))
