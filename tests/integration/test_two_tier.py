"""The two-tier example on real proxies, in every pairing: an L4 tier (tcp, PROXY v2 out) in
front of an L7 tier (http, PROXY in, routes by path, X-Forwarded-For, X-Request-Id).

Each of Envoy and HAProxy plays each tier: envoy→envoy, envoy→haproxy, haproxy→envoy,
haproxy→haproxy. One server per pairing runs `examples/two-tier.yaml` moved onto loopback: a
real Envoy for each group Envoy plays, a local HAProxy (relocated onto 127.0.0.2, same ports)
for each group HAProxy plays, and the `l7-fleet` cluster pointing at whichever L7 proxy runs.

A client talks only to the L4 tier and must see the L7 tier's routing; the backend must see the
client's own address in X-Forwarded-For. The proxies dial each other from 127.0.0.1, so a client
connecting from 127.0.0.2 tells the PROXY header's address apart from the L4 proxy's own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.client import HTTPConnection
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx
import pytest
import yaml

from controlplane.serve import Running, ServeOptions, start_server
from tests.harness.backends import Backend, BackendFleet, BackendSpec
from tests.harness.envoy import EnvoyProcess, wait_for
from tests.harness.loop_thread import LoopThread
from tests.harness.ports import free_port

pytestmark = [pytest.mark.envoy, pytest.mark.haproxy, pytest.mark.timeout(120)]

T = TypeVar("T")
Kind = Literal["envoy", "haproxy"]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "two-tier.yaml"
ENVOY_HOST = "127.0.0.1"
HAPROXY_HOST = "127.0.0.2"
WAIT = 15.0
CONNECTIONS = 20


@dataclass(frozen=True)
class Pairing:
    """Which proxy runs the L4 tier and which the L7 tier."""

    l4: Kind
    l7: Kind

    @property
    def id(self) -> str:
        return f"{self.l4}-to-{self.l7}"

    def host(self, kind: Kind) -> str:
        return HAPROXY_HOST if kind == "haproxy" else ENVOY_HOST

    def groups(self, kind: Kind) -> tuple[str, ...]:
        """The groups `kind` plays, L7 first: started in this order, the L4 tier's first
        health check finds the L7 proxy up instead of waiting for the next ones."""
        return tuple(group for group, k in (("l7", self.l7), ("l4", self.l4)) if k == kind)


PAIRINGS = [Pairing(l4, l7) for l4 in ("envoy", "haproxy") for l7 in ("envoy", "haproxy")]


def two_tier_config(
    pairing: Pairing, l4_port: int, l7_port: int, backends: dict[str, Backend]
) -> str:
    """The example with its listeners on 127.0.0.1, the L7 fleet being the one L7 proxy of
    `pairing`, and the harness's backends behind it."""
    config: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    ports = {"edge": l4_port, "web": l7_port}
    for listener in config["listeners"]:
        listener["address"] = f"{ENVOY_HOST}:{ports[listener['name']]}"
    endpoints = {
        "l7-fleet": [{"address": f"{pairing.host(pairing.l7)}:{l7_port}"}],
        "api": [{"address": backends["api"].address}],
        "frontend": [{"address": backends["frontend"].address}],
    }
    assert {c["name"] for c in config["clusters"]} == set(endpoints), "the example changed"
    for cluster in config["clusters"]:
        cluster["endpoints"] = endpoints[cluster["name"]]
    return yaml.safe_dump(config, sort_keys=False)


@dataclass(frozen=True)
class Seen:
    """One request through the L4 tier: the client's own address, the status, and what the
    answering backend reported (its name and the request headers it received)."""

    client: str
    status: int
    backend: str | None
    headers: dict[str, str]


def get(host: str, port: int, path: str, source: str = "127.0.0.1") -> Seen:
    """GET `path` on a fresh connection made from `source`."""
    conn = HTTPConnection(host, port, timeout=5, source_address=(source, 0))
    try:
        conn.connect()
        client = str(conn.sock.getsockname()[0])
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    report = json.loads(body) if response.getheader("x-backend") else {}
    return Seen(client, response.status, report.get("backend"), report.get("headers", {}))


@dataclass
class TwoTier:
    """A running pairing: the server, its API, and where a client reaches the L4 tier."""

    pairing: Pairing
    running: Running
    api: httpx.Client
    l4_host: str
    l4_port: int

    def get(self, path: str, source: str = "127.0.0.1") -> Seen:
        return get(self.l4_host, self.l4_port, path, source)

    def expected_proxies(self) -> dict[str, tuple[str, str]]:
        """Proxy id → (kind, group) of every proxy this pairing runs."""
        expected: dict[str, tuple[str, str]] = {}
        for group, kind in (("l4", self.pairing.l4), ("l7", self.pairing.l7)):
            proxy = f"envoy-{group}" if kind == "envoy" else f"local-haproxy-{group}"
            expected[proxy] = (kind, group)
        return expected


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, Backend]]:
    with BackendFleet() as fleet:
        yield fleet.start_all(BackendSpec(name) for name in ("api", "frontend"))


@pytest.fixture(scope="module", params=PAIRINGS, ids=lambda p: p.id)
def tiers(
    request: pytest.FixtureRequest,
    backends: dict[str, Backend],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[TwoTier]:
    pairing: Pairing = request.param
    tmp = tmp_path_factory.mktemp(pairing.id)
    l4_port, l7_port = free_port(), free_port()
    config = tmp / "two-tier.yaml"
    config.write_text(two_tier_config(pairing, l4_port, l7_port, backends))
    options = ServeOptions(
        db=tmp / "store.db",
        config=config,
        api="127.0.0.1:0",
        xds="127.0.0.1:0",
        insecure_local=True,
        haproxy_groups=pairing.groups("haproxy"),
        haproxy_bind=HAPROXY_HOST,
        workdir=tmp / "run",
    )
    thread = LoopThread()
    running: Running | None = None
    envoys: list[EnvoyProcess] = []
    api: httpx.Client | None = None
    try:
        running = thread.run(start_server(options))
        api = httpx.Client(base_url=running.api.url, timeout=30)
        for group in pairing.groups("envoy"):
            envoy = EnvoyProcess(tmp, f"envoy-{group}", group, running.xds.port or 0)
            envoys.append(envoy)
            envoy.start()
        lab = TwoTier(pairing, running, api, pairing.host(pairing.l4), l4_port)
        wait_for("the L4 tier to reach the api backend", lambda: answers(lab, "/api/x"), WAIT)
        yield lab
    finally:
        try:
            for envoy in envoys:
                envoy.stop()
        finally:
            try:
                if running is not None:
                    thread.run(running.stop())
            finally:
                if api is not None:
                    api.close()
                thread.close()


def answers(lab: TwoTier, path: str) -> bool:
    """Whether `path` through the L4 tier is answered by a backend yet."""
    try:
        return lab.get(path).backend is not None
    except OSError:
        return False


def test_the_l7_tier_routes_what_enters_the_l4_tier(tiers: TwoTier) -> None:
    api = tiers.get("/api/x")
    page = tiers.get("/")
    other = tiers.get("/apix")

    assert (api.status, api.backend) == (200, "api")
    assert (page.status, page.backend) == (200, "frontend")
    assert (other.status, other.backend) == (200, "frontend")


@pytest.mark.parametrize("source", ["127.0.0.1", "127.0.0.2"])
def test_the_client_address_crosses_the_l4_tier(tiers: TwoTier, source: str) -> None:
    seen = tiers.get("/api/x", source=source)

    assert seen.client == source
    assert seen.headers.get("x-forwarded-for") == source, seen.headers


def test_the_l7_tier_adds_a_request_id(tiers: TwoTier) -> None:
    first, second = tiers.get("/api/x"), tiers.get("/")

    ids = [seen.headers.get("x-request-id") for seen in (first, second)]
    assert all(ids) and ids[0] != ids[1], (first.headers, second.headers)


def test_many_connections_all_succeed(tiers: TwoTier) -> None:
    paths = [f"/api/{i}" if i % 2 else f"/page/{i}" for i in range(CONNECTIONS)]

    with ThreadPoolExecutor(max_workers=5) as pool:
        seen = list(pool.map(tiers.get, paths))

    assert [s.status for s in seen] == [200] * CONNECTIONS
    assert [s.backend for s in seen] == ["api" if i % 2 else "frontend" for i in range(CONNECTIONS)]
    assert all(s.headers.get("x-forwarded-for") == s.client for s in seen)
    assert len({s.headers.get("x-request-id") for s in seen}) == CONNECTIONS


def test_every_proxy_runs_the_head_revision(tiers: TwoTier) -> None:
    reply = tiers.api.get("/v1/status/wait", params={"timeout": WAIT})
    assert reply.status_code == 200, reply.text
    waited = reply.json()

    assert waited["converged"] and (waited["acked"], waited["total"]) == (2, 2), waited
    status = tiers.api.get("/v1/status").json()
    proxies = {p["id"]: p for p in status["proxies"]}
    assert {i: (p["kind"], p["group"]) for i, p in proxies.items()} == tiers.expected_proxies()
    for proxy in proxies.values():
        assert proxy["connected"] and proxy["current"], proxy
        assert proxy["revision"] == status["revision"] == waited["revision"], proxy
        assert proxy["last_nack"] is None, proxy
