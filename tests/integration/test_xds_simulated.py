"""Simulated xDS clients (grpc.aio stubs) for what a real Envoy will not do on demand.

Every test here is a *simulated* client against the real server over real gRPC: stale
nonces, unsubscribing, reconnecting with `initial_resource_versions`, many streams sharing
one channel, the per-type services.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
from envoy.service.cluster.v3 import cds_pb2_grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from envoy.service.listener.v3 import lds_pb2_grpc
from google.rpc import status_pb2

from controlplane.fleet import Ledger, XdsReports
from controlplane.xds import types
from controlplane.xds.cache import Snapshot, SnapshotCache
from controlplane.xds.server import XdsServer
from tests.harness.xds_resources import http_snapshot

BACKENDS = {"a": 8001, "b": 8002, "c": 8003}
GROUP = "sim"
TIMEOUT = 5.0

Req = discovery_pb2.DiscoveryRequest
DReq = discovery_pb2.DeltaDiscoveryRequest


def snap(routes: list[tuple[str, str]] | None = None, **kw: Any) -> Snapshot:
    return http_snapshot(9000, BACKENDS, routes or [("/", "a")], **kw)


def node(node_id: str) -> dict[str, str]:
    return {"id": node_id, "cluster": GROUP}


class Server:
    def __init__(self, cache: SnapshotCache, ledger: Ledger, channel: grpc.aio.Channel) -> None:
        self.cache, self.ledger, self.channel = cache, ledger, channel
        self.ads = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)


@asynccontextmanager
async def serving(snapshot: Snapshot | None = None) -> AsyncIterator[Server]:
    cache, ledger = SnapshotCache(), Ledger()
    if snapshot is not None:
        cache.set_snapshot(GROUP, snapshot)
    server = XdsServer(cache, XdsReports(ledger))
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield Server(cache, ledger, channel)
    finally:
        await server.stop(None)


async def read(call: Any) -> Any:
    async with asyncio.timeout(TIMEOUT):
        return await call.read()


async def until(what: str, check: Callable[[], bool]) -> None:
    async def poll() -> None:
        while not check():
            await asyncio.sleep(0.002)

    try:
        async with asyncio.timeout(TIMEOUT):
            await poll()
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())  # type: ignore[arg-type]


def test_simulated_client_stale_nonce_is_ignored() -> None:
    async def scenario() -> None:
        async with serving(snap()) as s:
            call = s.ads.StreamAggregatedResources()
            await call.write(Req(node=node("n1"), type_url=types.ROUTE, resource_names=["routes"]))
            first = await read(call)
            s.cache.set_snapshot(GROUP, snap([("/", "b")]))
            second = await read(call)
            assert second.nonce != first.nonce
            # A late NACK of the first response, asking for another name: stale, ignored.
            await call.write(
                Req(
                    type_url=types.ROUTE,
                    response_nonce=first.nonce,
                    resource_names=["other"],
                    error_detail=status_pb2.Status(code=3, message="late"),
                )
            )
            await call.write(
                Req(
                    type_url=types.ROUTE,
                    response_nonce=second.nonce,
                    version_info=second.version_info,
                    resource_names=["routes"],
                )
            )

            def acked() -> bool:
                p = s.ledger.get("n1")
                return p is not None and p.types[types.ROUTE].version_acked == second.version_info

            await until("the ACK of the second response", acked)
            status = s.ledger.get("n1")
            assert status is not None and status.types[types.ROUTE].last_nack is None
            # Had the stale request's subscription counted, the next push would be empty.
            s.cache.set_snapshot(GROUP, snap([("/", "c")]))
            third = await read(call)
            assert len(third.resources) == 1
            call.cancel()

    run(scenario)


def test_simulated_client_unsubscribes_sotw_and_delta() -> None:
    async def scenario() -> None:
        async with serving(snap()) as s:
            sotw = s.ads.StreamAggregatedResources()
            await sotw.write(
                Req(node=node("n1"), type_url=types.ENDPOINT, resource_names=["a", "b"])
            )
            both = await read(sotw)
            assert sorted(_cla_names(both.resources)) == ["a", "b"]
            await sotw.write(
                Req(
                    type_url=types.ENDPOINT,
                    response_nonce=both.nonce,
                    version_info=both.version_info,
                    resource_names=["a"],
                )
            )
            only_a = await read(sotw)
            assert _cla_names(only_a.resources) == ["a"]

            delta = s.ads.DeltaAggregatedResources()
            await delta.write(
                DReq(node=node("n2"), type_url=types.ENDPOINT, resource_names_subscribe=["a", "b"])
            )
            got = await read(delta)
            assert sorted(r.name for r in got.resources) == ["a", "b"]
            await delta.write(
                DReq(
                    type_url=types.ENDPOINT,
                    response_nonce=got.nonce,
                    resource_names_unsubscribe=["b"],
                    resource_names_subscribe=["c"],
                )
            )
            swapped = await read(delta)
            assert [r.name for r in swapped.resources] == ["c"]
            # a, b and c all change; the delta client hears about a and c only.
            changed = {"a": 7001, "b": 7002, "c": 7003}
            s.cache.set_snapshot(GROUP, http_snapshot(9000, changed, [("/", "a")]))
            update = await read(delta)
            assert [r.name for r in update.resources] == ["a", "c"]
            assert list(update.removed_resources) == []
            sotw.cancel()
            delta.cancel()

    run(scenario)


def test_simulated_delta_reconnect_sends_only_what_the_client_lacks() -> None:
    async def scenario() -> None:
        v1 = snap()
        async with serving(v1) as s:
            call = s.ads.DeltaAggregatedResources()
            await call.write(DReq(node=node("n1"), type_url=types.CLUSTER))
            first = await read(call)
            held = {r.name: r.version for r in first.resources}
            assert sorted(held) == ["a", "b", "c"]
            call.cancel()
            await until("the stream to close", lambda: s.ledger.count(GROUP) == 0)

            # While disconnected: c is gone, d appears, a's connect timeout changes.
            v2 = http_snapshot(
                9000, {**BACKENDS, "d": 8004}, [("/", "a")], clusters=["a", "b", "d"]
            )
            changed_a = v2.entries(types.CLUSTER)["a"].message
            changed_a.connect_timeout.seconds = 5
            v2 = Snapshot(
                {
                    types.CLUSTER: [changed_a, *(v2[types.CLUSTER][n] for n in ("b", "d"))],
                }
            )
            s.cache.set_snapshot(GROUP, v2)

            again = s.ads.DeltaAggregatedResources()
            await again.write(
                DReq(node=node("n1"), type_url=types.CLUSTER, initial_resource_versions=held)
            )
            resp = await read(again)
            assert sorted(r.name for r in resp.resources) == ["a", "d"]
            assert list(resp.removed_resources) == ["c"]
            await again.write(DReq(type_url=types.CLUSTER, response_nonce=resp.nonce))
            await until(
                "the reconnected client to run v2", lambda: s.ledger.group_runs(GROUP, v2.version)
            )
            again.cancel()

    run(scenario)


def test_simulated_many_streams_on_one_channel() -> None:
    streams = 200

    async def scenario() -> None:
        v1 = snap()
        async with serving(v1) as s:
            calls = [s.ads.StreamAggregatedResources() for _ in range(streams)]

            async def client(i: int, call: Any) -> None:
                await call.write(Req(node=node(f"n{i}"), type_url=types.CLUSTER))
                while True:
                    resp = await call.read()
                    if resp is grpc.aio.EOF:
                        return
                    await call.write(
                        Req(
                            type_url=types.CLUSTER,
                            response_nonce=resp.nonce,
                            version_info=resp.version_info,
                        )
                    )

            tasks = [asyncio.create_task(client(i, c)) for i, c in enumerate(calls)]
            await until("every stream to sync", lambda: s.ledger.count(GROUP) == streams)
            await until(
                "every stream to run v1",
                lambda: s.ledger.group_runs(GROUP, v1.version, [types.CLUSTER]),
            )
            v2 = snap(clusters=["a", "b"])
            s.cache.set_snapshot(GROUP, v2)
            await until(
                "every stream to run v2",
                lambda: s.ledger.group_runs(GROUP, v2.version, [types.CLUSTER]),
            )
            for c in calls:
                c.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    run(scenario)


def test_simulated_clients_of_the_per_type_services() -> None:
    async def scenario() -> None:
        v1 = snap()
        async with serving(v1) as s:
            cds = cds_pb2_grpc.ClusterDiscoveryServiceStub(s.channel).DeltaClusters()
            await cds.write(DReq(node=node("n1"), type_url=types.CLUSTER))
            clusters = await read(cds)
            assert sorted(r.name for r in clusters.resources) == ["a", "b", "c"]
            lds = lds_pb2_grpc.ListenerDiscoveryServiceStub(s.channel).StreamListeners()
            await lds.write(Req(node=node("n1")))
            listeners = await read(lds)
            assert listeners.type_url == types.LISTENER and len(listeners.resources) == 1
            assert s.ledger.count(GROUP) == 1, "two streams of one node are one proxy"
            cds.cancel()
            lds.cancel()

    run(scenario)


def _cla_names(resources: Any) -> list[str]:
    from envoy.config.endpoint.v3 import endpoint_pb2

    names = []
    for packed in resources:
        cla = endpoint_pb2.ClusterLoadAssignment()
        packed.Unpack(cla)
        names.append(cla.cluster_name)
    return names
