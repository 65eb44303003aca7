"""The protocol of one stream, driven directly (no gRPC): ordering, NACKs, make-before-break."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import pytest
from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2

from controlplane.fleet import Ledger, XdsReports
from controlplane.xds import types
from controlplane.xds.cache import Snapshot, SnapshotCache
from controlplane.xds.stream import DeltaStream, SotwStream
from tests.harness.xds_resources import http_snapshot

BACKENDS = {"a": 8001, "b": 8002, "c": 8003}
GROUP = "g"
NODE = {"id": "n1", "cluster": GROUP}

Req = discovery_pb2.DiscoveryRequest
DReq = discovery_pb2.DeltaDiscoveryRequest


def snap(routes: list[tuple[str, str]] | None = None, **kw: Any) -> Snapshot:
    return http_snapshot(9000, BACKENDS, routes or [("/", "a")], **kw)


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


class Driver:
    """Plays the client side of one stream and collects what the server sent."""

    def __init__(self, kind: type[SotwStream] | type[DeltaStream], cache: SnapshotCache) -> None:
        self.cache = cache
        self.ledger = Ledger()
        self.raw: list[bytes] = []
        self.stream = kind(cache, XdsReports(self.ledger), self._send, lambda: None)
        self.delta = kind is DeltaStream

    async def _send(self, payload: bytes) -> None:
        self.raw.append(payload)

    def take(self) -> list[Any]:
        parse = (
            discovery_pb2.DeltaDiscoveryResponse.FromString
            if self.delta
            else discovery_pb2.DiscoveryResponse.FromString
        )
        out = [parse(p) for p in self.raw]
        self.raw.clear()
        return out

    async def sotw(self, type_url: str, names: list[str] | None = None, **kw: Any) -> None:
        assert isinstance(self.stream, SotwStream)
        await self.stream.handle(
            Req(node=NODE, type_url=type_url, resource_names=names or [], **kw)
        )

    async def ack(self, resp: Any, names: list[str] | None = None, error: str = "") -> None:
        detail = status_pb2.Status(code=3, message=error) if error else None
        if self.delta:
            assert isinstance(self.stream, DeltaStream)
            await self.stream.handle(
                DReq(type_url=resp.type_url, response_nonce=resp.nonce, error_detail=detail)
            )
        else:
            assert isinstance(self.stream, SotwStream)
            await self.stream.handle(
                Req(
                    type_url=resp.type_url,
                    response_nonce=resp.nonce,
                    version_info="" if error else resp.version_info,
                    resource_names=names or [],
                    error_detail=detail,
                )
            )

    async def change(self, snapshot: Snapshot) -> None:
        self.cache.set_snapshot(GROUP, snapshot)
        await self.stream.refresh()


def kinds(responses: list[Any]) -> list[str]:
    return [types.short_name(r.type_url) for r in responses]


def test_additions_go_clusters_endpoints_then_listeners_and_routes() -> None:
    async def scenario() -> None:
        d = Driver(SotwStream, SnapshotCache())
        await d.sotw(types.CLUSTER)
        await d.sotw(types.ENDPOINT, ["a", "b", "c"])
        await d.sotw(types.LISTENER)
        await d.sotw(types.ROUTE, ["routes"])
        assert d.take() == []  # no snapshot yet
        await d.change(snap())
        first = d.take()
        assert kinds(first) == ["cds", "eds"]  # listeners and routes wait for their answers
        await d.ack(first[0])
        assert d.take() == []
        await d.ack(first[1], ["a", "b", "c"])
        second = d.take()
        assert kinds(second) == ["lds", "rds"]
        await d.ack(second[0])
        await d.ack(second[1], ["routes"])
        assert d.ledger.group_runs(GROUP, snap().version)

        await d.change(snap([("/", "b")]))
        (only,) = d.take()
        assert kinds([only]) == ["rds"], "only the changed type is sent"

    run(scenario())


def test_a_nacked_version_is_not_resent_and_the_next_one_is() -> None:
    async def scenario() -> None:
        d = Driver(SotwStream, SnapshotCache())
        await d.change(snap())
        await d.sotw(types.ROUTE, ["routes"])
        (good,) = d.take()
        await d.ack(good, ["routes"])
        await d.change(snap([("/", "b")], bad_regex="(("))
        (bad,) = d.take()
        await d.ack(bad, ["routes"], error="invalid regex")
        await d.stream.refresh()
        await d.sotw(types.ROUTE, ["routes"], response_nonce=bad.nonce)
        assert d.take() == []
        status = d.ledger.get("n1")
        assert status is not None
        rds = status.types[types.ROUTE]
        assert rds.last_nack is not None and rds.last_nack.error == "invalid regex"
        assert rds.version_acked == good.version_info

        await d.change(snap([("/", "c")]))
        (fixed,) = d.take()
        assert fixed.version_info not in (good.version_info, bad.version_info)

    run(scenario())


def test_stale_nonces_are_ignored() -> None:
    async def scenario() -> None:
        d = Driver(SotwStream, SnapshotCache())
        await d.change(snap())
        await d.sotw(types.ROUTE, ["routes"])
        (first,) = d.take()
        await d.change(snap([("/", "b")]))
        (second,) = d.take()
        # A NACK of the older response, with a different subscription: all ignored.
        await d.ack(first, ["other"], error="late complaint")
        assert d.take() == []
        status = d.ledger.get("n1")
        assert status is not None and status.types[types.ROUTE].last_nack is None
        await d.ack(second, ["routes"])
        status = d.ledger.get("n1")
        assert status is not None
        assert status.types[types.ROUTE].version_acked == second.version_info

    run(scenario())


def test_cluster_removal_waits_until_routes_are_acked() -> None:
    async def scenario() -> None:
        d = Driver(SotwStream, SnapshotCache())
        v1 = snap([("/", "a")], clusters=["a"])
        await d.change(v1)
        await d.sotw(types.CLUSTER)
        await d.sotw(types.ROUTE, ["routes"])
        for r in d.take():
            await d.ack(r, ["routes"] if r.type_url == types.ROUTE else [])
        for r in d.take():
            await d.ack(r, ["routes"])

        v2 = snap([("/", "b")], clusters=["b"])
        await d.change(v2)
        (cds,) = d.take()
        assert cds.type_url == types.CLUSTER
        assert len(cds.resources) == 2, "a is kept while routes may still use it"
        await d.ack(cds)
        (rds,) = d.take()
        assert rds.type_url == types.ROUTE
        await d.ack(rds, ["routes"])
        (final,) = d.take()
        assert final.type_url == types.CLUSTER and len(final.resources) == 1
        assert final.version_info == v2.type_version(types.CLUSTER)
        await d.ack(final)
        assert d.ledger.group_runs(GROUP, v2.version)

    run(scenario())


def test_reconnecting_client_at_the_current_version_is_sent_nothing() -> None:
    async def scenario() -> None:
        d = Driver(SotwStream, SnapshotCache())
        s = snap()
        await d.change(s)
        await d.sotw(types.LISTENER, version_info=s.type_version(types.LISTENER))
        await d.sotw(types.CLUSTER, version_info="something-old")
        assert kinds(d.take()) == ["cds"]
        status = d.ledger.get("n1")
        assert status is not None
        assert status.types[types.LISTENER].version_acked == s.type_version(types.LISTENER)

    run(scenario())


def test_wildcard_and_named_subscriptions() -> None:
    async def scenario() -> None:
        d = Driver(SotwStream, SnapshotCache())
        await d.change(snap())
        await d.sotw(types.CLUSTER)
        await d.sotw(types.ENDPOINT, ["b"])
        cds, eds = d.take()
        assert len(cds.resources) == 3
        assert len(eds.resources) == 1
        await d.ack(eds, ["b", "c"])  # the ACK widens the subscription
        (wider,) = d.take()
        assert len(wider.resources) == 2
        await d.ack(wider, ["*"])
        (everything,) = d.take()
        assert len(everything.resources) == 3

    run(scenario())


def test_delta_sends_changes_and_removals_after_routes_are_acked() -> None:
    async def scenario() -> None:
        d = Driver(DeltaStream, SnapshotCache())
        v1 = snap([("/", "a")], clusters=["a", "b"])
        await d.change(v1)
        await d.stream.handle(DReq(node=NODE, type_url=types.CLUSTER))
        (cds,) = d.take()
        assert sorted(r.name for r in cds.resources) == ["a", "b"]
        await d.ack(cds)
        await d.stream.handle(DReq(type_url=types.ROUTE, resource_names_subscribe=["routes"]))
        (rds,) = d.take()
        await d.ack(rds)

        v2 = snap([("/", "b")], clusters=["b", "c"])
        await d.change(v2)
        (cds,) = d.take()
        assert [r.name for r in cds.resources] == ["c"] and list(cds.removed_resources) == []
        await d.ack(cds)
        (rds,) = d.take()
        assert [r.name for r in rds.resources] == ["routes"]
        await d.ack(rds)
        (cds,) = d.take()
        assert list(cds.resources) == [] and list(cds.removed_resources) == ["a"]
        assert cds.system_version_info == v2.type_version(types.CLUSTER)
        await d.ack(cds)
        assert d.ledger.group_runs(GROUP, v2.version)

    run(scenario())


def test_delta_nack_is_not_resent() -> None:
    async def scenario() -> None:
        d = Driver(DeltaStream, SnapshotCache())
        await d.change(snap())
        await d.stream.handle(
            DReq(node=NODE, type_url=types.ROUTE, resource_names_subscribe=["routes"])
        )
        (good,) = d.take()
        await d.ack(good)
        await d.change(snap([("/", "b")], bad_regex="(("))
        (bad,) = d.take()
        await d.ack(bad, error="invalid regex")
        await d.stream.refresh()
        assert d.take() == []
        await d.change(snap([("/", "c")]))
        assert len(d.take()) == 1

    run(scenario())


def test_per_type_stream_serves_only_its_type() -> None:
    async def scenario() -> None:
        cache = SnapshotCache()
        raw: list[bytes] = []

        async def send(p: bytes) -> None:
            raw.append(p)

        stream = SotwStream(cache, XdsReports(Ledger()), send, lambda: None, types.CLUSTER)
        cache.set_snapshot(GROUP, snap())
        await stream.handle(Req(node=NODE, type_url=types.LISTENER))
        assert raw == []
        await stream.handle(Req(node=NODE))  # type_url may be left out on a per-type service
        (resp,) = [discovery_pb2.DiscoveryResponse.FromString(p) for p in raw]
        assert resp.type_url == types.CLUSTER

    run(scenario())


def test_nonces_never_repeat_on_a_stream_even_when_a_version_comes_back() -> None:
    async def scenario() -> None:
        d = Driver(SotwStream, SnapshotCache())
        await d.change(snap())
        await d.sotw(types.ROUTE, ["routes"])
        nonces = []
        for routes in ([("/", "b")], [("/", "a")], [("/", "b")]):
            (resp,) = d.take()
            nonces.append(resp.nonce)
            await d.ack(resp, ["routes"])
            await d.change(snap(routes))
        (resp,) = d.take()
        nonces.append(resp.nonce)
        assert len(set(nonces)) == len(nonces)

    run(scenario())


def test_streams_at_the_same_point_share_one_encoded_response() -> None:
    async def scenario() -> None:
        cache = SnapshotCache()
        cache.set_snapshot(GROUP, snap())
        one, two = Driver(SotwStream, cache), Driver(SotwStream, cache)
        for d in (one, two):
            await d.sotw(types.CLUSTER)
        assert one.raw[0] is two.raw[0]

    run(scenario())


def test_a_node_without_cluster_is_in_the_default_group() -> None:
    async def scenario() -> None:
        cache = SnapshotCache()
        cache.set_snapshot("default", snap())
        d = Driver(SotwStream, cache)
        await d.stream.handle(Req(node={"id": "lonely"}, type_url=types.LISTENER))
        assert kinds(d.take()) == ["lds"]
        status = d.ledger.get("lonely")
        assert status is not None and status.group == "default"

    run(scenario())


def test_nacks_are_logged_as_warnings(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        d = Driver(SotwStream, SnapshotCache())
        await d.change(snap())
        await d.sotw(types.LISTENER)
        (resp,) = d.take()
        await d.ack(resp, error="bad filter")

    with caplog.at_level(logging.WARNING, logger="controlplane.xds"):
        run(scenario())
    (record,) = [r for r in caplog.records if "NACK" in r.getMessage()]
    assert record.levelno == logging.WARNING and "bad filter" in record.getMessage()
