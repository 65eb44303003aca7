"""`serve --xds-workers 2`: two xDS server processes on one port, fed by the main process,
serving real Envoys over mutual TLS.

Each Envoy is the only node of its own group (`g0`...), holding the listener of its own port,
so traffic through each one shows what that Envoy runs. All share one fleet certificate that
names every group. The status the API answers is the main process's ledger, gathered from
what both workers report.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from controlplane.serve import Running, ServeError, ServeOptions, TlsFiles, start_server
from controlplane.xds import types
from controlplane.xds.cache import Snapshot, SnapshotCache
from controlplane.xds.callbacks import NoCallbacks
from controlplane.xds.identity import node_uri
from controlplane.xds.workers import XdsWorkers
from tests.harness.backends import BackendFleet, BackendSpec
from tests.harness.clients import http
from tests.harness.envoy import EnvoyProcess, wait_for
from tests.harness.loop_thread import LoopThread
from tests.harness.pki import Issued, TestPki
from tests.harness.ports import free_port
from tests.harness.xds_resources import http_snapshot

pytestmark = [pytest.mark.envoy, pytest.mark.timeout(240)]

ENVOYS = 4
GROUPS = [f"g{i}" for i in range(ENVOYS)]
TOKEN = "workers-admin-0123456789abcdef"
WAIT = 30.0
ATTEMPTS = 16


def config(ports: list[int], backends: dict[str, str], cluster: str) -> dict[str, Any]:
    """Listener `l<i>` on `ports[i]`, alone in group `g<i>`, every route to `cluster`."""
    return {
        "listeners": [
            {
                "name": f"l{i}",
                "address": f"127.0.0.1:{port}",
                "protocol": "http",
                "virtual_hosts": [
                    {
                        "name": "all",
                        "domains": ["*"],
                        "routes": [{"backends": [{"cluster": cluster}]}],
                    }
                ],
            }
            for i, port in enumerate(ports)
        ],
        "clusters": [
            {"name": name, "endpoints": [{"address": address}]}
            for name, address in backends.items()
        ],
        "node_groups": [{"name": GROUPS[i], "listeners": [f"l{i}"]} for i in range(len(ports))],
    }


@dataclass
class Lab:
    running: Running
    pki: TestPki
    api: httpx.Client
    envoys: list[EnvoyProcess]
    ports: list[int]
    backends: dict[str, str]

    @property
    def workers(self) -> XdsWorkers:
        assert isinstance(self.running.xds, XdsWorkers)
        return self.running.xds

    def status(self) -> dict[str, dict[str, Any]]:
        reply = self.api.get("/v1/status")
        assert reply.status_code == 200, reply.text
        return {p["id"]: p for p in reply.json()["proxies"]}

    def head(self) -> int:
        return int(self.api.get("/v1/config").headers["etag"].strip('"'))

    def wait_converged(self, revision: int) -> dict[str, Any]:
        reply = self.api.get("/v1/status/wait", params={"revision": revision, "timeout": WAIT})
        assert reply.status_code == 200, reply.text
        waited: dict[str, Any] = reply.json()
        assert waited["converged"], waited
        return waited

    def route_to(self, cluster: str) -> int:
        reply = self.api.put("/v1/config", json=config(self.ports, self.backends, cluster))
        assert reply.status_code in (200, 201), reply.text
        return int(reply.headers["etag"].strip('"'))

    def served_by(self, index: int) -> str | None:
        return http("127.0.0.1", self.ports[index], "/", timeout=5).backend

    def wait_served(self, cluster: str) -> None:
        for i in range(ENVOYS):
            wait_for(
                f"envoy {i} to serve {cluster}", lambda i=i: self.served_by(i) == cluster, WAIT
            )

    def placement(self) -> dict[str, int]:
        """Envoy node id → the PID of the worker holding its stream."""
        found = self.workers.placement()
        assert all(len(pids) == 1 for pids in found.values()), found
        return {node: pids[0] for node, pids in found.items()}

    def print_placement(self, when: str) -> dict[str, int]:
        placed = self.placement()
        by_worker = {
            pid: sorted(n for n, p in placed.items() if p == pid) for pid in self.workers.pids()
        }
        print(f"{when}: Envoys by xDS worker PID: {by_worker}")
        return placed


def envoy_bootstrap(
    port: int, node: str, group: str, admin: int, pki: TestPki, fleet: Issued
) -> str:
    command = str(Path(sys.executable).with_name("controlplane"))
    done = subprocess.run(
        [
            command,
            "envoy-bootstrap",
            *("--node-id", node, "--group", group),
            *("--xds", f"127.0.0.1:{port}", "--admin-port", str(admin)),
            *("--xds-ca", str(pki.ca), "--tls-cert", str(fleet.cert), "--tls-key", str(fleet.key)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("workers")
    pki = TestPki(tmp / "pki")
    server = pki.server("controlplane")
    fleet = pki.client("fleet", tuple(node_uri(g) for g in GROUPS))
    tokens = tmp / "tokens.yaml"
    tokens.write_text(f"- {{name: admin, token: {TOKEN}, scopes: [read, write]}}\n")
    with BackendFleet() as fleet_of_backends:
        backends = {n: fleet_of_backends.start(BackendSpec(n)).address for n in ("blue", "green")}
        ports = [free_port() for _ in GROUPS]
        seed = tmp / "config.json"
        seed.write_text(json.dumps(config(ports, backends, "blue")))
        options = ServeOptions(
            db=tmp / "store.db",
            config=seed,
            api="127.0.0.1:0",
            xds="127.0.0.1:0",
            tokens_file=tokens,
            targets=("envoy",),
            workdir=tmp / "run",
            xds_tls=TlsFiles(server.cert, server.key, pki.ca),
            api_tls=TlsFiles(server.cert, server.key),
            xds_workers=2,
        )
        thread = LoopThread()
        running = thread.run(start_server(options))
        api = httpx.Client(
            base_url=running.api.url,
            headers={"Authorization": f"Bearer {TOKEN}"},
            verify=ssl.create_default_context(cafile=pki.ca),
            timeout=30,
        )
        envoys: list[EnvoyProcess] = []
        try:
            assert running.xds.port is not None
            for i, group in enumerate(GROUPS):
                node = f"envoy-{i}"
                bootstrap = envoy_bootstrap(running.xds.port, node, group, free_port(), pki, fleet)
                envoys.append(EnvoyProcess(tmp, node, group, 0, bootstrap=bootstrap))
            for envoy in envoys:
                envoy.start()
            lab = Lab(running, pki, api, envoys, ports, backends)
            lab.wait_converged(1)
            yield lab
        finally:
            try:
                for envoy in envoys:
                    envoy.stop()
            finally:
                api.close()
                thread.run(running.stop())
                thread.close()


def test_the_envoys_spread_over_the_workers_and_the_status_shows_every_one(lab: Lab) -> None:
    placed = lab.print_placement("at start")
    assert len(lab.workers.pids()) == 2
    assert set(placed) == {e.node_id for e in lab.envoys}
    assert set(placed.values()) <= set(lab.workers.pids())
    proxies = lab.status()
    for i, envoy in enumerate(lab.envoys):
        proxy = proxies[envoy.node_id]
        assert proxy["connected"] and proxy["current"] and proxy["group"] == GROUPS[i], proxy
        assert lab.served_by(i) == "blue"


def test_every_envoy_acks_a_route_change_and_serves_it(lab: Lab) -> None:
    revision = lab.route_to("green")
    waited = lab.wait_converged(revision)
    assert (waited["acked"], waited["total"]) == (ENVOYS, ENVOYS), waited
    lab.wait_served("green")
    for proxy in lab.status().values():
        assert proxy["revision"] == revision and proxy["current"] and proxy["last_nack"] is None


def xds_updates(envoy: EnvoyProcess) -> dict[str, int]:
    """How many xDS responses the Envoy accepted, by stat."""
    return {k: v for k, v in envoy.stats().items() if k.endswith(".update_success")}


def xds_connections(envoy: EnvoyProcess) -> int:
    return envoy.stats()["cluster.controlplane_xds.upstream_cx_total"]


def versions(envoy: EnvoyProcess) -> dict[str, str]:
    """The version_info of every dynamic resource the Envoy runs."""
    found: dict[str, str] = {}
    for section in envoy.config_dump()["configs"]:
        for key in ("dynamic_active_clusters", "dynamic_route_configs"):
            for item in section.get(key, []):
                name = item.get("cluster", item.get("route_config", {})).get("name")
                found[f"{key}/{name}"] = item["version_info"]
        for item in section.get("dynamic_listeners", []):
            found[f"listener/{item['name']}"] = item["active_state"]["version_info"]
    return found


def test_a_killed_worker_is_restarted_and_its_envoys_reconnect_without_a_push(lab: Lab) -> None:
    head = lab.head()
    lab.wait_converged(head)
    placed = lab.print_placement("before the kill")
    counts = {pid: list(placed.values()).count(pid) for pid in lab.workers.pids()}
    victim = max(counts, key=lambda pid: counts[pid])
    moved = [e for e in lab.envoys if placed[e.node_id] == victim]
    before = {e.node_id: (versions(e), xds_updates(e), xds_connections(e)) for e in moved}
    restarted = lab.workers.restarted

    os.kill(victim, signal.SIGKILL)

    wait_for("the worker to be started again", lambda: lab.workers.restarted > restarted, WAIT)
    wait_for("a new worker PID", lambda: victim not in lab.workers.pids(), WAIT)
    for envoy in moved:
        wait_for(
            f"{envoy.node_id} to reconnect",
            lambda e=envoy: (
                xds_connections(e) > before[e.node_id][2] and e.node_id in lab.workers.placement()
            ),
            WAIT,
        )
    wait_for("both workers to listen", lambda: lab.workers.listening == 2, WAIT)
    lab.print_placement("after the kill")
    lab.wait_converged(head)
    proxies = lab.status()
    for i, envoy in enumerate(lab.envoys):
        proxy = proxies[envoy.node_id]
        assert proxy["connected"] and proxy["current"] and proxy["revision"] == head, proxy
        assert lab.served_by(i) == "green"
    for envoy in moved:
        held, updates, _ = before[envoy.node_id]
        assert versions(envoy) == held  # the same content-hash versions on any worker
        assert xds_updates(envoy) == updates  # and nothing was sent again
    revision = lab.route_to("blue")
    lab.wait_converged(revision)
    lab.wait_served("blue")


def first_listeners(lab: Lab, issued: Issued, node_id: str, group: str) -> Any:
    assert lab.running.xds.port is not None
    credentials = grpc.ssl_channel_credentials(
        lab.pki.ca.read_bytes(), issued.key_pem.encode(), issued.cert_pem.encode()
    )
    with grpc.secure_channel(f"127.0.0.1:{lab.running.xds.port}", credentials) as channel:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        request = discovery_pb2.DiscoveryRequest(
            node=base_pb2.Node(id=node_id, cluster=group), type_url=types.LISTENER
        )
        return next(stub.StreamAggregatedResources(iter([request]), timeout=10))


def test_every_worker_refuses_a_node_outside_its_certificates_groups(lab: Lab) -> None:
    only_g0 = lab.pki.client("only-g0", (node_uri("g0"),))
    before = set(lab.status())
    wait_for("both workers to listen", lambda: lab.workers.listening == 2, WAIT)
    # Each attempt is a new connection, which the kernel gives to either worker (their log
    # lines say which).
    for attempt in range(ATTEMPTS):
        with pytest.raises(grpc.RpcError) as refused:
            first_listeners(lab, only_g0, f"intruder-{attempt}", "g1")
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "is not an identity its client certificate names" in str(refused.value.details())
    assert len(first_listeners(lab, only_g0, "own-g0", "g0").resources) == 1
    assert not {f"intruder-{a}" for a in range(ATTEMPTS)} & set(lab.status())
    assert before <= set(lab.status())


def worker_pids() -> set[int]:
    """The xDS worker processes this test process started (its children running one)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == os.getpid() and b"controlplane.xds.worker" in command:
            found.add(int(entry.name))
    return found


def test_plain_text_workers_on_loopback_serve_and_all_stop_with_serve(tmp_path: Path) -> None:
    seed = tmp_path / "config.json"
    seed.write_text(json.dumps(config([free_port()], {"blue": "127.0.0.1:9"}, "blue")))
    options = ServeOptions(
        db=tmp_path / "store.db",
        config=seed,
        api="127.0.0.1:0",
        xds="127.0.0.1:0",
        insecure_local=True,
        targets=("envoy",),
        workdir=tmp_path / "run",
        xds_workers=2,
    )
    others = worker_pids()  # the module's lab
    thread = LoopThread()
    try:
        running = thread.run(start_server(options))
        try:
            assert isinstance(running.xds, XdsWorkers)
            pids = set(running.xds.pids())
            assert len(pids) == 2 and worker_pids() == others | pids
            target = f"127.0.0.1:{running.xds.port}"
            with grpc.insecure_channel(target) as channel:
                stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
                request = discovery_pb2.DiscoveryRequest(
                    node=base_pb2.Node(id="plain-1", cluster="g0"), type_url=types.LISTENER
                )
                reply = next(stub.StreamAggregatedResources(iter([request]), timeout=10))
            assert [r.type_url for r in reply.resources] == [types.LISTENER]
            assert reply.version_info == running.xds.cache.get("g0").type_version(types.LISTENER)

            # Another server cannot join the port (SO_REUSEPORT would let it).
            second = replace(options, db=tmp_path / "second.db", xds=target)
            with pytest.raises(OSError, match=f"cannot listen on {target}"):
                thread.run(start_server(second))
        finally:
            thread.run(running.stop())
        assert worker_pids() == others

        # A server that fails to start after its workers did stops them too.
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        try:
            busy = replace(options, api=f"127.0.0.1:{taken.getsockname()[1]}")
            with pytest.raises(ServeError, match="the API cannot listen"):
                thread.run(start_server(busy))
        finally:
            taken.close()
        assert worker_pids() == others
    finally:
        thread.close()


def test_workers_serve_new_streams_what_the_cache_holds_back(tmp_path: Path) -> None:
    """A group held on its last-known-good (`SnapshotCache.hold_back`, as `serve` does after a
    NACK) is held in every worker too, and released in every worker."""
    good = http_snapshot(9000, {"a": 8001}, [("/", "a")])
    bad = http_snapshot(9000, {"a": 8001}, [("/", "a")], bad_regex="(")
    cache = SnapshotCache()
    cache.set_snapshot("g", good)
    thread = LoopThread()
    workers = XdsWorkers(cache, NoCallbacks(), 2)
    try:
        port = thread.run(workers.start("127.0.0.1", 0))

        def routes_version(node_id: str) -> str:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
                request = discovery_pb2.DiscoveryRequest(
                    node=base_pb2.Node(id=node_id, cluster="g"),
                    type_url=types.ROUTE,
                    resource_names=["routes"],
                )
                reply = next(stub.StreamAggregatedResources(iter([request]), timeout=10))
                return str(reply.version_info)

        def served_everywhere(snapshot: Snapshot, what: str) -> None:
            # New connections go to either worker: each must serve it.
            wanted = snapshot.type_version(types.ROUTE)
            for attempt in range(ATTEMPTS):
                node = f"{what}-{attempt}"
                wait_for(
                    f"{node} to be served it", lambda n=node: routes_version(n) == wanted, WAIT
                )

        cache.set_snapshot("g", bad)
        served_everywhere(bad, "current")
        cache.hold_back("g", good)
        served_everywhere(good, "held")
        cache.hold_back("g", None)
        served_everywhere(bad, "released")
    finally:
        thread.run(workers.stop())
        thread.close()
