"""The xDS server against a real Envoy, over state of the world and over delta."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from controlplane.fleet import LedgerStatus, RevisionIndex
from controlplane.fleet.ledger import Ledger
from controlplane.fleet.records import ProxyRecord
from controlplane.xds import types
from controlplane.xds.cache import Snapshot, SnapshotCache
from tests.harness.envoy import EnvoyProcess, wait_for
from tests.harness.ports import free_port
from tests.harness.xds_resources import (
    eds_cluster,
    http_listener,
    http_snapshot,
    load_assignment,
    route_config,
)
from tests.harness.xds_server import XdsServerThread

pytestmark = pytest.mark.envoy

GROUP = "edge"
DRAIN_STATS = (
    "listener_manager.listener_added",
    "listener_manager.listener_modified",
    "listener_manager.listener_removed",
    "listener_manager.total_listeners_draining",
    "cluster_manager.cluster_added",
    "cluster_manager.cluster_modified",
    "cluster_manager.cluster_removed",
)


class _NamedHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = self.server.name.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, int]]:
    """Three HTTP backends on 127.0.0.1 answering their own name: name → port."""
    servers = []
    try:
        for name in ("alpha", "beta", "gamma"):
            server = ThreadingHTTPServer(("127.0.0.1", 0), _NamedHandler)
            server.name = name  # type: ignore[attr-defined]
            threading.Thread(target=server.serve_forever, daemon=True).start()
            servers.append(server)
        yield {s.name: s.server_address[1] for s in servers}  # type: ignore[attr-defined]
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()


@pytest.fixture
def xds() -> Iterator[XdsServerThread]:
    with XdsServerThread() as server:
        server.start()
        yield server


@pytest.fixture(params=["sotw", "delta"])
def delta(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "delta")


@pytest.fixture
def listener_port() -> int:
    return free_port()


def start_envoy(tmp_path: Path, xds: XdsServerThread, delta: bool) -> EnvoyProcess:
    assert xds.port is not None
    return EnvoyProcess(tmp_path, "envoy-1", GROUP, xds.port, delta=delta).start()


def get(port: int, path: str = "/") -> tuple[int, str]:
    """One request through Envoy on a fresh connection: (status, body)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_route_change_is_live_right_after_its_ack(
    tmp_path: Path, xds: XdsServerThread, backends: dict[str, int], listener_port: int, delta: bool
) -> None:
    v1 = http_snapshot(listener_port, backends, [("/", "alpha")])
    xds.cache.set_snapshot(GROUP, v1)
    with start_envoy(tmp_path, xds, delta) as envoy:
        envoy.wait_synced(xds.ledger, v1.version)
        assert get(listener_port) == (200, "alpha")

        v2 = http_snapshot(listener_port, backends, [("/", "beta")])
        assert v2.type_version(types.CLUSTER) == v1.type_version(types.CLUSTER)
        xds.cache.set_snapshot(GROUP, v2)
        envoy.wait_acked(xds.ledger, {types.ROUTE: v2.type_version(types.ROUTE)})
        assert get(listener_port) == (200, "beta")
        envoy.wait_synced(xds.ledger, v2.version)

        status = xds.ledger.get(envoy.node_id)
        assert status is not None and status.kind == "envoy" and status.group == GROUP
        # Only the route configuration changed, so only it was sent again.
        sent_after_v1 = [e.type_url for e in status.events if e.action == "sent"][4:]
        assert sent_after_v1 == [types.ROUTE]


def test_nack_is_recorded_old_config_keeps_routing_and_next_version_is_accepted(
    tmp_path: Path, xds: XdsServerThread, backends: dict[str, int], listener_port: int, delta: bool
) -> None:
    v1 = http_snapshot(listener_port, backends, [("/", "alpha")])
    xds.cache.set_snapshot(GROUP, v1)
    with start_envoy(tmp_path, xds, delta) as envoy:
        envoy.wait_synced(xds.ledger, v1.version)

        bad = http_snapshot(listener_port, backends, [("/", "beta")], bad_regex="((")
        xds.cache.set_snapshot(GROUP, bad)
        status = envoy.wait_nacked(xds.ledger, types.ROUTE, bad.type_version(types.ROUTE))
        rds = status.types[types.ROUTE]
        assert rds.last_nack is not None and rds.last_nack.error.strip()
        assert rds.version_acked == v1.type_version(types.ROUTE)
        assert not xds.ledger.group_runs(GROUP, bad.version)
        assert get(listener_port) == (200, "alpha")

        good = http_snapshot(listener_port, backends, [("/", "gamma")])
        xds.cache.set_snapshot(GROUP, good)
        envoy.wait_synced(xds.ledger, good.version)
        assert get(listener_port) == (200, "gamma")
        assert xds.ledger.group_runs(GROUP, good.version)

        status = xds.ledger.get(envoy.node_id)
        assert status is not None
        bad_sends = [
            e
            for e in status.events
            if e.action == "sent" and e.version == bad.type_version(types.ROUTE)
        ]
        assert len(bad_sends) == 1, "a NACKed version is not sent again"


def test_xds_server_restart_keeps_traffic_and_resyncs_without_listener_churn(
    tmp_path: Path, xds: XdsServerThread, backends: dict[str, int], listener_port: int, delta: bool
) -> None:
    v1 = http_snapshot(listener_port, backends, [("/", "alpha")])
    xds.cache.set_snapshot(GROUP, v1)
    with start_envoy(tmp_path, xds, delta) as envoy:
        envoy.wait_synced(xds.ledger, v1.version)
        before = envoy.stats()

        xds.stop_server()
        wait_for(
            "Envoy to notice the xDS server is gone",
            lambda: envoy.stats().get("control_plane.connected_state") == 0,
            timeout=10,
        )
        assert get(listener_port) == (200, "alpha")

        # A restarted control plane rebuilds its cache from the same config: same content,
        # same versions. Meanwhile only the routes changed.
        cache, ledger = SnapshotCache(), Ledger()
        v2 = http_snapshot(listener_port, backends, [("/", "beta")])
        cache.set_snapshot(GROUP, v2)
        xds.restart(cache, ledger)
        envoy.wait_synced(ledger, v2.version)
        assert get(listener_port) == (200, "beta")

        after = envoy.stats()
        assert after["control_plane.connected_state"] == 1
        for name in DRAIN_STATS:
            assert after.get(name, 0) == before.get(name, 0), name
        status = ledger.get(envoy.node_id)
        assert status is not None
        assert [e.type_url for e in status.events if e.action == "sent"] == [types.ROUTE]


def test_cluster_removal_is_make_before_break(
    tmp_path: Path, xds: XdsServerThread, backends: dict[str, int], listener_port: int, delta: bool
) -> None:
    v1 = http_snapshot(listener_port, backends, [("/", "alpha")], clusters=["alpha"])
    xds.cache.set_snapshot(GROUP, v1)
    with start_envoy(tmp_path, xds, delta) as envoy:
        envoy.wait_synced(xds.ledger, v1.version)

        # alpha goes away while the routes that replace it are refused: alpha must stay.
        refused = http_snapshot(
            listener_port, backends, [("/", "beta")], clusters=["beta"], bad_regex="(("
        )
        xds.cache.set_snapshot(GROUP, refused)
        envoy.wait_nacked(xds.ledger, types.ROUTE, refused.type_version(types.ROUTE))
        wait_for("beta to be added", lambda: "beta" in envoy.cluster_names(), timeout=10)
        assert "alpha" in envoy.cluster_names()
        assert get(listener_port) == (200, "alpha")

        # Good routes: alpha is removed only after they are ACKed; no request fails meanwhile.
        failures: list[tuple[int, str]] = []
        stop = threading.Event()

        def traffic() -> None:
            while not stop.is_set():
                answer = get(listener_port)
                if answer[0] != 200:
                    failures.append(answer)

        worker = threading.Thread(target=traffic)
        worker.start()
        try:
            good = http_snapshot(listener_port, backends, [("/", "beta")], clusters=["beta"])
            xds.cache.set_snapshot(GROUP, good)
            envoy.wait_synced(xds.ledger, good.version)
            wait_for("alpha to be removed", lambda: "alpha" not in envoy.cluster_names(), 10)
        finally:
            stop.set()
            worker.join()
        assert failures == []
        assert get(listener_port) == (200, "beta")

        status = xds.ledger.get(envoy.node_id)
        assert status is not None
        events = [(e.type_url, e.action, e.version) for e in status.events]
        routes_acked = events.index((types.ROUTE, "ack", good.type_version(types.ROUTE)))
        clusters_final = events.index((types.CLUSTER, "sent", good.type_version(types.CLUSTER)))
        assert routes_acked < clusters_final


def publish(xds: XdsServerThread, index: RevisionIndex, revision: int, snapshot: Snapshot) -> None:
    """What the fleet does with a revision: record what it gives the group, then serve it."""
    parts = {t: snapshot.type_version(t) for t in snapshot}
    index.record(revision, "envoy", GROUP, snapshot.version, parts)
    index.complete(revision)
    xds.cache.set_snapshot(GROUP, snapshot)


def test_an_endpoint_envoy_refuses_leaves_it_behind_on_the_revision_before(
    tmp_path: Path, xds: XdsServerThread, backends: dict[str, int], listener_port: int, delta: bool
) -> None:
    """A new cluster whose endpoint Envoy refuses (an IPv6 zone id, crafted here since the
    model refuses it): CDS is ACKed, EDS NACKed, so the Envoy does not run the new revision."""
    index = RevisionIndex()
    status = LedgerStatus(xds.ledger, index)

    def snapshot(*extra: tuple[str, str, int]) -> Snapshot:
        messages = [
            http_listener("http", listener_port, "routes"),
            route_config("routes", [("/", "alpha")]),
            eds_cluster("alpha"),
            load_assignment("alpha", [("127.0.0.1", backends["alpha"])]),
        ]
        for name, host, port in extra:
            messages += [eds_cluster(name), load_assignment(name, [(host, port)])]
        return Snapshot.from_messages(messages)

    def record() -> ProxyRecord:
        [found] = status.proxies()
        return found

    good = snapshot()
    publish(xds, index, 1, good)
    with start_envoy(tmp_path, xds, delta) as envoy:
        envoy.wait_synced(xds.ledger, good.version)
        assert record().revision == 1 and record().runs(1)

        publish(xds, index, 2, snapshot(("broken", "::1%lo", 80)))
        wait_for(
            "the EDS NACK",
            lambda: (
                (p := envoy.status(xds.ledger)) is not None
                and p.types[types.ENDPOINT].last_nack is not None
            ),
            timeout=10,
        )
        wait_for("broken to be added", lambda: "broken" in envoy.cluster_names(), timeout=10)

        proxy = record()
        assert not proxy.runs(2), proxy
        assert proxy.revision == 1 and proxy.refused(2), proxy
        assert proxy.last_nack is not None and "malformed IP address" in proxy.last_nack.error
        assert get(listener_port) == (200, "alpha")


def test_going_back_to_a_snapshot_it_ran_before_is_recognised(
    tmp_path: Path, xds: XdsServerThread, backends: dict[str, int], listener_port: int, delta: bool
) -> None:
    """A cluster removed (make-before-break), then the previous config again: the same
    snapshot version as before, which the Envoy is seen to run once it ACKs it anew."""
    both = http_snapshot(listener_port, backends, [("/x", "alpha"), ("/", "beta")])
    xds.cache.set_snapshot(GROUP, both)
    with start_envoy(tmp_path, xds, delta) as envoy:
        envoy.wait_synced(xds.ledger, both.version)
        one = http_snapshot(listener_port, backends, [("/", "alpha")], clusters=["alpha"])
        xds.cache.set_snapshot(GROUP, one)
        envoy.wait_synced(xds.ledger, one.version)
        wait_for("beta to be removed", lambda: "beta" not in envoy.cluster_names(), timeout=10)

        again = http_snapshot(listener_port, backends, [("/x", "alpha"), ("/", "beta")])
        assert again.version == both.version
        xds.cache.set_snapshot(GROUP, again)
        envoy.wait_synced(xds.ledger, again.version)
        assert get(listener_port) == (200, "beta")
