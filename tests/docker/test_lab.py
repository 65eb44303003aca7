"""The two-tier lab in Docker, from a client's side: client -> L4 tier -> L7 fleet -> backends.

Every test runs on the one lab the session started (`controlplane lab up`) and leaves it as it
found it: a route it adds is removed, a container it stops is started again and waited for.
The control-plane restart comes last: agents that had nothing new to apply do not report again
after it, so the status lists them only at the next revision. Figures (failover detection
time, requests lost) are printed, never asserted as times.
"""

from __future__ import annotations

import json
import time

import grpc
import httpx
import pytest
from websockets.sync.client import connect as websocket

from controlplane.lab.commands import PROXIES
from tests.docker.lab import ENVOYS, HAPROXY_HOSTS, L7_FLEET, LabHandle, Traffic, get

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

_CLIENT = """
import json, socket, sys
host = sys.argv[1]
with socket.create_connection((host, 80), timeout=5) as sock:
    me = sock.getsockname()[0]
    sock.sendall(b"GET / HTTP/1.1\\r\\nHost: lab\\r\\nConnection: close\\r\\n\\r\\n")
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
print(json.dumps({"me": me, "answer": json.loads(answer.split(b"\\r\\n\\r\\n", 1)[1])}))
"""


def _peers(lab: LabHandle, port: int, count: int) -> dict[str, set[str]]:
    """Which L7 proxies (by service) relayed `count` requests on new connections, and to which
    backends."""
    by_address = {lab.address(service): service for service in L7_FLEET}
    seen: dict[str, set[str]] = {}
    for _ in range(count):
        answer = get(port)
        seen.setdefault(by_address[answer["peer"].rsplit(":", 1)[0]], set()).add(answer["backend"])
    return seen


def test_traffic_flows_client_to_l4_to_every_l7_proxy_to_the_backends(lab: LabHandle) -> None:
    for port in (lab.http_port, lab.envoy_l4_port):  # the L4 HAProxy, the L4 Envoy
        assert _peers(lab, port, 16) == {service: {"web-1"} for service in L7_FLEET}

    api = {get(lab.http_port, "/api/users")["backend"] for _ in range(20)}
    assert api <= {"api-1", "api-2", "api-canary"} and {"api-1", "api-2"} <= api
    assert get(lab.http_port, "/api/users", {"x-canary": "always"})["backend"] == "api-canary"
    assert get(lab.http_port, "/api/users", {"Cookie": "canary=1"})["backend"] == "api-canary"

    with grpc.insecure_channel(f"127.0.0.1:{lab.http_port}") as channel:
        hello = channel.unary_unary("/lab.Greeter/Hello")
        assert {hello(b"", timeout=5) for _ in range(10)} == {b"api-1", b"api-2"}
    with websocket(f"ws://127.0.0.1:{lab.http_port}/ws") as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "web-1:hello"

    # The backend sees the client's own address, carried by PROXY v2 through the L4 tier, from a
    # client inside the lab network (Docker's port publishing puts its gateway in between).
    for l4 in ("l4-haproxy", "l4-envoy"):
        seen = json.loads(lab.run_client(_CLIENT, lab.address(l4)))
        assert seen["answer"]["headers"]["x-forwarded-for"] == seen["me"]
        assert seen["answer"]["peer"].rsplit(":", 1)[0] in {lab.address(s) for s in L7_FLEET}
    published = get(lab.http_port)["headers"]["x-forwarded-for"]
    print(f"\nthrough the published port the backend sees {published} (the network's gateway)")


def test_a_route_change_through_the_api_reaches_every_l7_proxy(lab: LabHandle) -> None:
    route = {"name": "moved", "match": {"path": {"prefix": "/moved"}}}
    route["backends"] = [{"cluster": "api-canary"}]
    routes = "/v1/listeners/web/virtual_hosts/app/routes"
    assert get(lab.http_port, "/moved")["backend"] == "web-1"
    with lab.api() as api:
        created = api.post(routes, params={"position": 0}, json=route)
        assert created.status_code in (200, 201), created.text
        revision = int(created.headers["etag"].strip('"'))
        try:
            waited = api.get("/v1/status/wait", params={"revision": revision, "timeout": 30})
            assert waited.status_code == 200, waited.text
            status = api.get("/v1/status").json()
            assert status["revision"] == revision
            assert {p["id"]: p["revision"] for p in status["proxies"]} == {
                proxy: revision for proxy in ("l4-haproxy", *ENVOYS, *L7_FLEET[2:])
            }
            by_address = {lab.address(service): service for service in L7_FLEET}
            answered: dict[str, set[str]] = {}
            for _ in range(24):
                answer = get(lab.http_port, "/moved/x")
                peer = by_address[answer["peer"].rsplit(":", 1)[0]]
                answered.setdefault(peer, set()).add(answer["backend"])
            assert answered == {service: {"api-canary"} for service in L7_FLEET}
        finally:
            removed = api.delete(f"{routes}/moved")
            assert removed.status_code in (200, 204), removed.text
    lab.wait_converged()
    assert get(lab.http_port, "/moved")["backend"] == "web-1"


def test_stopping_an_l7_container_the_l4_tier_routes_around_it(lab: LabHandle) -> None:
    victim = lab.container("l7-envoy-1")
    watcher = lab.watch_l4_server("l7-envoy-1", up=False)
    assert next(watcher) == "watching"
    with Traffic(lab.http_port, workers=4) as traffic:
        stopped_at = time.time()
        victim.stop(timeout=5)
        down_at = float(next(watcher).split()[1])
        traffic.wait_served(200)
    try:
        lost = traffic.failed()
        after = [r for r in traffic.served() if r.started > down_at]
        print(
            f"\nfailover: the L4 health check took l7-envoy-1 out {down_at - stopped_at:.2f}s "
            f"after `docker stop`; {len(lost)} of {len(traffic.results)} requests lost before "
            f"that ({', '.join(sorted({r.error for r in lost})) or 'none'}); "
            f"{len(after)} served after it, none failed"
        )
        assert traffic.failed(started_after=down_at) == []
        assert lab.address("l7-envoy-1") not in {r.peer_ip for r in after}
        assert {r.peer_ip for r in after} == {lab.address(s) for s in L7_FLEET[1:]}
    finally:
        watcher = lab.watch_l4_server("l7-envoy-1", up=True)
        assert next(watcher) == "watching"
        victim.start()
        next(watcher)
        lab.wait_converged()
    assert lab.address("l7-envoy-1") in {
        get(lab.http_port)["peer"].rsplit(":", 1)[0] for _ in range(8)
    }


def test_killing_an_agent_container_its_haproxy_keeps_serving(lab: LabHandle) -> None:
    agent = lab.container("l7-agent-1")
    before = lab.haproxy_master("l7-haproxy-1")
    address = lab.address("l7-haproxy-1")
    with Traffic(lab.http_port) as traffic:
        agent.kill()
        agent.wait(timeout=10)
        while_dead = len(traffic.served())
        traffic.wait_served(40)
        assert address in {r.peer_ip for r in traffic.served()[while_dead:]}
        restarted = int(time.time())
        agent.start()
        deadline = time.monotonic() + 60
        while b"adopted the running HAProxy" not in agent.logs(since=restarted):
            assert time.monotonic() < deadline, agent.logs()[-2000:]
            time.sleep(0.1)
        lab.wait_converged("l7-haproxy-1")
        traffic.wait_served(40)
    print(
        f"\nagent kill and restart: {len(traffic.results)} requests, {len(traffic.failed())} failed"
    )
    assert traffic.failed() == []
    assert lab.haproxy_master("l7-haproxy-1") == before


def test_restarting_the_control_plane_interrupts_no_traffic_and_reloads_nothing(
    lab: LabHandle,
) -> None:
    masters = {service: lab.haproxy_master(service) for service in HAPROXY_HOSTS}
    watched = (
        "listener_manager.listener_added",
        "listener_manager.listener_modified",
        "listener_manager.listener_removed",
        "cluster_manager.cluster_added",
        "cluster_manager.cluster_modified",
        "cluster_manager.cluster_removed",
    )
    envoys = {s: {k: lab.envoy_stats(s)[k] for k in watched} for s in ENVOYS}
    versions = {service: lab.haproxy_version(service) for service in HAPROXY_HOSTS}
    with lab.api() as api:
        revision = api.get("/v1/status").json()["revision"]
    with Traffic(lab.http_port) as traffic, Traffic(lab.envoy_l4_port) as through_envoy:
        lab.container("cp").restart(timeout=10)
        with lab.api() as api:
            deadline = time.monotonic() + 60
            while True:  # the Envoys reconnect, the agents poll again, all report
                try:
                    status = api.get("/v1/status").json()
                except httpx.HTTPError:
                    status = {}
                current = {p["id"] for p in status.get("proxies", []) if p.get("current")}
                if set(PROXIES) <= current:
                    break
                assert time.monotonic() < deadline, f"proxies not back: {status}"
                time.sleep(0.2)
            assert status["revision"] == revision
        traffic.wait_served(50)
        through_envoy.wait_served(50)
    print(
        f"\ncontrol-plane restart: {len(traffic.results) + len(through_envoy.results)} requests, "
        f"{len(traffic.failed()) + len(through_envoy.failed())} failed"
    )
    assert traffic.failed() == [] and through_envoy.failed() == []
    assert {s: lab.haproxy_master(s) for s in HAPROXY_HOSTS} == masters
    assert {s: {k: lab.envoy_stats(s)[k] for k in watched} for s in ENVOYS} == envoys
    assert {service: lab.haproxy_version(service) for service in HAPROXY_HOSTS} == versions
