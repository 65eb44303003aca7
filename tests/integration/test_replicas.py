"""Several control-plane replicas on one PostgreSQL database, with a real Envoy (its
bootstrap naming both replicas' xDS servers) and a real agent-fed HAProxy (`--server` naming
both replicas), under load.

A write on one replica is served by the proxies attached to the other; the status answers
the same on both; `kill -9` of the replica holding the Envoy's stream and the agent's poll
loses no request, and both proxies are current again on the survivor without a change of
their configuration (the versions are content hashes: the survivor sends what they have).

The tests share one lab and run in file order; the kill comes after the plain write.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane.envoy.bootstrap import bootstrap_yaml
from controlplane.proxies.haproxy.agent import HAProxyAgent
from tests.harness.agents import RunningAgent, start_agent, stop_agent
from tests.harness.backends import BackendFleet, BackendSpec
from tests.harness.clients import http
from tests.harness.envoy import EnvoyProcess, wait_for
from tests.harness.ports import free_port
from tests.harness.postgres import PostgresServer
from tests.harness.replicas import Api, ServeProcess

pytestmark = [pytest.mark.envoy, pytest.mark.haproxy, pytest.mark.timeout(240)]

ENVOY_HOST, AGENT_HOST = "127.0.0.1", "127.0.0.3"
TOKEN = "replicas-token-0123456789"
AGENT_TOKEN = "replicas-agent-token-0123456789"
TOKENS = (
    f"- {{name: lab, token: {TOKEN}, scopes: [read, write]}}\n"
    f"- {{name: agent, token: {AGENT_TOKEN}, scopes: [agent], groups: [agents]}}\n"
)
ENVOY_ID, AGENT_ID = "edge-envoy", "agent-1"
WAIT = 30.0


def cluster_of(address: str) -> str:
    return "web-" + address.rsplit(":", 1)[1]


def config(
    envoy_port: int,
    agent_port: int,
    backend: str,
    held: int | None = None,
    others: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One listener per group (the Envoy's `edge`, the agents'), both to the cluster of
    `backend` (a cluster per backend: a change moves the route); `held` adds an edge listener
    on that port."""

    def listener(name: str, address: str) -> dict[str, Any]:
        route = {"name": "default", "backends": [{"cluster": cluster_of(backend)}]}
        vhost = {"name": "site", "domains": ["*"], "routes": [route]}
        return {"name": name, "address": address, "protocol": "http", "virtual_hosts": [vhost]}

    edge = [listener("web", f"{ENVOY_HOST}:{envoy_port}")]
    if held is not None:
        edge.append(listener("held", f"{ENVOY_HOST}:{held}"))
    return {
        "listeners": [*edge, listener("agent-web", f"{AGENT_HOST}:{agent_port}")],
        "clusters": [
            {"name": cluster_of(address), "endpoints": [{"address": address}]}
            for address in sorted({backend, *others})
        ],
        "node_groups": [
            {"name": "edge", "listeners": [str(item["name"]) for item in edge]},
            {"name": "agents", "listeners": ["agent-web"]},
        ],
    }


class Load:
    """Requests sent one after another through a proxy's listener, each on a new connection,
    from a thread of its own, counting the answers and the failures."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.answered: dict[str, int] = {}
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"load-{port}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                answer = http(self.host, self.port, "/", timeout=5)
                if answer.status != 200:
                    self.failures.append(f"status {answer.status}")
                else:
                    backend = answer.backend or "?"
                    self.answered[backend] = self.answered.get(backend, 0) + 1
            except OSError as exc:
                self.failures.append(repr(exc))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    @property
    def total(self) -> int:
        return sum(self.answered.values()) + len(self.failures)


@dataclass
class Lab:
    """Two replicas `a` and `b`, the Envoy, the agent and the backends `one` and `two`."""

    replicas: dict[str, ServeProcess]
    apis: dict[str, Api]
    envoy: EnvoyProcess
    agent: HAProxyAgent
    ports: tuple[int, int]
    backends: dict[str, str]
    killed: list[str] = field(default_factory=list)

    def config(self, backend: str, held: int | None = None) -> dict[str, Any]:
        others = tuple(self.backends.values())
        return config(*self.ports, self.backends[backend], held, others)

    def holder(self, proxy: str, asked: str | None = None) -> str:
        """The replica holding `proxy` (its stream, its polls), as a live replica says."""
        return holder(self.apis[asked or next(n for n in self.apis if n not in self.killed)], proxy)

    def other(self, name: str) -> str:
        return next(n for n in self.replicas if n != name)


def holder(api: Api, proxy: str) -> str:
    """The replica holding `proxy`, as `api` says."""
    found = proxies(api)[proxy]
    assert found["connected"], found
    return str(found["detail"]["replica"])


def proxies(api: Api) -> dict[str, dict[str, Any]]:
    return {p["id"]: p for p in api.status()["proxies"]}


def wait_status(api: Api, what: str, check: Any) -> dict[str, dict[str, Any]]:
    def probe() -> dict[str, dict[str, Any]] | None:
        found = proxies(api)
        return found if check(found) else None

    try:
        return wait_for(what, probe, WAIT, every=0.01)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}: {proxies(api)}") from None


def answers(port: int, host: str) -> str | None:
    return http(host, port, "/").backend


@pytest.fixture(scope="module")
def lab(postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("replicas")
    db = postgres_server.create_database("replicas_lab")
    tokens, seed = tmp / "tokens.yaml", tmp / "config.yaml"
    tokens.write_text(TOKENS)
    envoy_port, agent_port = free_port(), free_port()
    started: list[ServeProcess] = []
    apis: dict[str, Api] = {}
    envoy: EnvoyProcess | None = None
    agent: RunningAgent | None = None
    with BackendFleet() as fleet:
        backends = {n: fleet.start(BackendSpec(n)).address for n in ("one", "two")}
        everyone = tuple(backends.values())
        seeded = config(envoy_port, agent_port, backends["one"], others=everyone)
        seed.write_text(yaml.safe_dump(seeded))
        try:
            for name in ("a", "b"):
                replica = ServeProcess(tmp, name, db, tokens, seed)
                started.append(replica.start())
                apis[name] = Api(replica, TOKEN)
            a, b = started
            envoy = EnvoyProcess(
                tmp,
                ENVOY_ID,
                "edge",
                b.xds_port,
                bootstrap=bootstrap_yaml(
                    ENVOY_ID, "edge", *b.xds, 0, retry_base_s=0.05, retry_max_s=0.5,
                    also_xds=[a.xds],
                ),
            )  # fmt: skip
            envoy.start()
            wait_status(apis["a"], "the Envoy to be seen", lambda s: ENVOY_ID in s)
            first = holder(apis["a"], ENVOY_ID)  # the agent polls the Envoy's replica first
            servers = sorted(
                (r.url for r in started), key=lambda url: url != apis[first].replica.url
            )
            agent = start_agent(",".join(servers), tmp / "agent", AGENT_ID, AGENT_TOKEN)
            replicas = {r.name: r for r in started}
            lab = Lab(replicas, apis, envoy, agent[0], (envoy_port, agent_port), backends)
            for api in apis.values():
                wait_status(
                    api,
                    "both proxies to run revision 1",
                    lambda s: (
                        {ENVOY_ID, AGENT_ID} <= set(s) and all(p["current"] for p in s.values())
                    ),
                )
            yield lab
        finally:
            try:
                if agent is not None:
                    stop_agent(*agent)
                if envoy is not None:
                    envoy.stop()
            finally:
                for api in apis.values():
                    api.close()
                for replica in started:
                    replica.stop()
                postgres_server.drop_database("replicas_lab")


def test_both_proxies_are_attached_to_one_replica_and_seen_by_both(lab: Lab) -> None:
    holder = lab.holder(ENVOY_ID)
    assert lab.holder(AGENT_ID) == holder
    for name in lab.apis:
        assert lab.holder(ENVOY_ID, name) == holder


def test_a_write_on_one_replica_is_served_by_the_proxies_attached_to_the_other(lab: Lab) -> None:
    holder = lab.holder(ENVOY_ID)
    writer = lab.apis[lab.other(holder)]
    revision = writer.put_config(lab.config("two"))
    result = writer.wait(revision, WAIT)
    assert result["converged"] and result["acked"] == 2, result
    assert answers(lab.ports[0], ENVOY_HOST) == "two"
    assert answers(lab.ports[1], AGENT_HOST) == "two"


def test_the_status_answers_the_same_on_every_replica(lab: Lab) -> None:
    revision = lab.apis["a"].status()["revision"]
    for api in lab.apis.values():
        assert api.wait(revision, WAIT)["converged"]
    seen = {name: lab.apis[name].status() for name in lab.apis}
    assert seen["a"]["proxies"] == seen["b"]["proxies"]
    assert {p["id"] for p in seen["a"]["proxies"]} == {ENVOY_ID, AGENT_ID}


def churn(lab: Lab) -> dict[str, int]:
    """What would move if a proxy's configuration changed: Envoy's listener and cluster
    updates, HAProxy's reloads."""
    stats = lab.envoy.stats()
    names = (
        "listener_manager.listener_modified",
        "listener_manager.listener_added",
        "cluster_manager.cluster_modified",
        "cluster_manager.cluster_added",
    )
    found = {name: stats.get(name, 0) for name in names}
    found["haproxy reloads"] = lab.agent.manager.reload_count()
    return found


def test_killing_the_replica_holding_the_proxies_loses_no_request(lab: Lab) -> None:
    holder = lab.holder(ENVOY_ID)
    survivor = lab.other(holder)
    api = lab.apis[survivor]
    before = churn(lab)
    loads = [Load(ENVOY_HOST, lab.ports[0]), Load(AGENT_HOST, lab.ports[1])]
    try:
        wait_for("load to flow", lambda: all(load.total > 20 for load in loads), WAIT)
        killed_at = time.monotonic()
        lab.replicas[holder].kill()
        lab.killed.append(holder)
        wait_status(
            api,
            "both proxies held by the survivor",
            lambda s: all(
                s[p]["connected"] and s[p]["detail"]["replica"] == survivor
                for p in (ENVOY_ID, AGENT_ID)
            ),
        )
        took = time.monotonic() - killed_at
        print(f"\nfailover: both proxies on {survivor} {took:.2f} s after kill -9")
        assert churn(lab) == before  # nothing changed on either proxy
        revision = api.put_config(lab.config("one"))
        result = api.wait(revision, WAIT)
        assert result["converged"] and result["acked"] == 2, result
        wait_for(
            "the new backend through both",
            lambda: all("one" in load.answered for load in loads),
            WAIT,
        )
    finally:
        for load in loads:
            load.stop()
            print(f"load on port {load.port}: {load.answered}, failed: {load.failures[:3]}")
        for name, replica_api in lab.apis.items():
            if name not in lab.killed:
                print(f"status on {name}: {replica_api.status()}")
    for load in loads:
        assert load.failures == []


def test_a_replica_started_again_answers_the_same_status(lab: Lab) -> None:
    [killed] = lab.killed
    lab.replicas[killed].start()
    lab.killed.clear()
    revision = lab.apis[killed].status()["revision"]
    for api in lab.apis.values():
        assert api.wait(revision, WAIT)["converged"]
    seen = {name: lab.apis[name].status()["proxies"] for name in lab.apis}
    assert seen["a"] == seen["b"]
    assert all(p["connected"] and p["detail"]["replica"] != killed for p in seen["a"])


def wait_held_back(api: Api, holds: list[dict[str, Any]]) -> None:
    """Until `api`'s status names exactly `holds` as held back."""
    wait_for(f"{holds} held back", lambda: api.status()["held_back"] == holds, WAIT)


def test_an_envoy_connecting_while_its_group_refuses_the_head_gets_the_last_it_accepted(
    lab: Lab, tmp_path: Path
) -> None:
    """The edge Envoy refuses a listener on a port another process holds, and stops; an Envoy
    of the same group connecting to the other replica is served the revision the group last
    accepted (the newest the refusing Envoy runs entirely), and both replicas' status say so;
    once the group accepts a newer revision, the Envoy gets that."""
    holder = lab.holder(ENVOY_ID)
    other = lab.replicas[lab.other(holder)]
    api = lab.apis[holder]
    with socket.socket() as taken:
        taken.bind((ENVOY_HOST, 0))
        taken.listen()
        refused = api.put_config(lab.config("two", held=taken.getsockname()[1]))
        result = api.wait(refused, WAIT)
        assert [p["id"] for p in result["refused"]] == [ENVOY_ID], result
        good = proxies(api)[ENVOY_ID]["revision"]  # what it runs: the last its group accepted
        assert good < refused
        hold = {"kind": "envoy", "group": "edge", "revision": good, "refused": refused}
        for each in lab.apis.values():
            wait_held_back(each, [hold])
        lab.envoy.stop()  # it holds the `web` port, which the late Envoy needs
        late = EnvoyProcess(
            tmp_path,
            "late-envoy",
            "edge",
            other.xds_port,
            bootstrap=bootstrap_yaml(
                "late-envoy", "edge", *other.xds, 0, retry_base_s=0.05, retry_max_s=0.5
            ),
        )
        late.start()
        try:
            seen = wait_status(
                lab.apis[holder],
                "the late Envoy runs the last good revision",
                lambda s: "late-envoy" in s and s["late-envoy"]["revision"] == good,
            )
            assert seen["late-envoy"]["last_nack"] is None and not seen["late-envoy"]["current"]
            listeners = {
                entry["active_state"]["listener"]["name"]
                for config in late.config_dump()["configs"]
                if config["@type"].endswith("ListenersConfigDump")
                for entry in config.get("dynamic_listeners", [])
                if "active_state" in entry
            }
            assert listeners == {"web"}  # not the refused one
            accepted = api.put_config(lab.config("one"))
            assert api.wait(accepted, WAIT)["converged"]
            for each in lab.apis.values():
                wait_held_back(each, [])
            wait_status(
                lab.apis[holder],
                "the late Envoy runs the newest revision",
                lambda s: s["late-envoy"]["current"],
            )
        finally:
            late.stop()
