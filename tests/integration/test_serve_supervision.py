"""A dead proxy is noticed, restarted and reported; every refusal is recorded; status tells
the truth. The whole server (`start_server`) with a real Envoy and a local HAProxy (group
`edge`, the HAProxy relocated onto 127.0.0.2) and a real `haproxy-agent` (group `agents`, on
127.0.0.3), all seen through the REST API and `controlplane status`.

The tests share one server and run in file order; the server restart comes last.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from controlplane.proxies.haproxy.agent import HAProxyAgent
from controlplane.serve import ServeOptions
from controlplane.xds import types
from tests.harness.agents import RunningAgent, start_agent, stop_agent
from tests.harness.backends import BackendFleet, BackendSpec
from tests.harness.clients import http
from tests.harness.envoy import EnvoyProcess, wait_for
from tests.harness.loop_thread import LoopThread
from tests.harness.ports import SharedPortListener, connect_times, free_port
from tests.harness.processes import wait_gone
from tests.harness.served import ServedServer

pytestmark = [pytest.mark.envoy, pytest.mark.haproxy, pytest.mark.timeout(180)]

ENVOY_HOST, HAPROXY_HOST, AGENT_HOST = "127.0.0.1", "127.0.0.2", "127.0.0.3"
TOKEN = "supervision-token-0123456789"
AGENT_TOKEN = "supervision-agent-token-0123456789"
TOKENS = (
    f"- {{name: lab, token: {TOKEN}, scopes: [read, write]}}\n"
    f"- {{name: agent, token: {AGENT_TOKEN}, scopes: [agent], groups: [agents]}}\n"
)
ENVOY_ID = "edge-envoy"
LOCAL_ID = "local-haproxy-edge"
AGENT_ID = "agent-1"
WAIT = 15.0


def config(port: int, agent_port: int, backend: str, held: int | None = None) -> dict[str, Any]:
    """`web` for the edge group (Envoy and the local HAProxy), `agent-web` for the agents'
    group; `held` adds an edge listener on that port."""

    def listener(name: str, address: str) -> dict[str, Any]:
        route = {"name": "default", "backends": [{"cluster": "web"}]}
        vhost = {"name": "site", "domains": ["*"], "routes": [route]}
        return {"name": name, "address": address, "protocol": "http", "virtual_hosts": [vhost]}

    edge = [listener("web", f"{ENVOY_HOST}:{port}")]
    if held is not None:
        edge.append(listener("held", f"{ENVOY_HOST}:{held}"))
    return {
        "listeners": [*edge, listener("agent-web", f"{AGENT_HOST}:{agent_port}")],
        "clusters": [{"name": "web", "endpoints": [{"address": backend}]}],
        "node_groups": [
            {"name": "edge", "listeners": [str(item["name"]) for item in edge]},
            {"name": "agents", "listeners": ["agent-web"]},
        ],
    }


class Lab(ServedServer):
    """The server (restarted by the last test) and what it serves: the edge listener's port,
    the agents' listener's port, the backend's address, and the agent once started."""

    def __init__(
        self, thread: LoopThread, options: ServeOptions, ports: tuple[int, int], backend: str
    ) -> None:
        super().__init__(thread, options, TOKEN)
        self.port, self.agent_port = ports
        self.backend = backend
        self.agent: HAProxyAgent | None = None

    def config(self, held: int | None = None) -> dict[str, Any]:
        return config(self.port, self.agent_port, self.backend, held)

    @property
    def url(self) -> str:
        """The API's URL, also while the server is stopped (agents keep it)."""
        return str(self.api.base_url).rstrip("/")

    def head(self) -> int:
        return int(self.api.get("/v1/status").json()["revision"])

    def status(self) -> dict[str, dict[str, Any]]:
        reply = self.api.get("/v1/status")
        assert reply.status_code == 200, reply.text
        return {p["id"]: p for p in reply.json()["proxies"]}

    def wait_status(self, what: str, check: Any) -> dict[str, dict[str, Any]]:
        def probe() -> dict[str, dict[str, Any]] | None:
            found = self.status()
            return found if check(found) else None

        try:
            return wait_for(what, probe, WAIT, every=0.01)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}: {self.status()}") from None

    def wait_revision(self, revision: int) -> dict[str, Any]:
        reply = self.api.get("/v1/status/wait", params={"revision": revision, "timeout": WAIT})
        assert reply.status_code == 200, reply.text
        result: dict[str, Any] = reply.json()
        return result

    def events(self, node_id: str) -> list[str]:
        """The ledger's supervision events of a proxy, in order."""
        proxy = self.running.ledger.get(node_id)
        assert proxy is not None
        return [e.action for e in proxy.events if e.action not in ("sent", "ack", "nack")]

    def metric(self, family: str, *labels: str) -> float:
        lines = self.api.get("/metrics").text.splitlines()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in lines
            if line.startswith(family + "{") and all(label in line for label in labels)
        )

    def cli_status(self) -> list[str]:
        command = str(Path(sys.executable).with_name("controlplane"))
        done = subprocess.run(
            [command, "status", "--server", self.url, "--token", TOKEN],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout.splitlines()

    def cli_row(self, node_id: str) -> str:
        [row] = [line for line in self.cli_status() if line.startswith(node_id + " ")]
        return row


def serve_options(tmp: Path, seed_config: dict[str, Any], **overrides: Any) -> ServeOptions:
    """What the labs here run: `serve` on free ports with the tokens and a seed config written
    in `tmp`, a local HAProxy of group edge on HAPROXY_HOST; `overrides` change any of it."""
    tokens, seed = tmp / "tokens.yaml", tmp / "config.yaml"
    tokens.write_text(TOKENS)
    seed.write_text(yaml.safe_dump(seed_config))
    options = ServeOptions(
        db=tmp / "store.db",
        config=seed,
        api="127.0.0.1:0",
        xds="127.0.0.1:0",
        tokens_file=tokens,
        haproxy_groups=("edge",),
        haproxy_bind=HAPROXY_HOST,
        workdir=tmp / "run",
    )
    return replace(options, **overrides)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("supervision")
    thread = LoopThread()
    with BackendFleet() as backends:
        web = backends.start(BackendSpec("web"))
        port, agent_port = free_port(), free_port()
        options = serve_options(tmp, config(port, agent_port, web.address))
        lab = Lab(thread, options, (port, agent_port), web.address)
        envoy: EnvoyProcess | None = None
        agent: RunningAgent | None = None
        try:
            lab.start()
            envoy = EnvoyProcess(tmp, ENVOY_ID, "edge", lab.running.xds.port or 0)
            envoy.start()
            agent = start_agent(lab.url, tmp / "agent", AGENT_ID, AGENT_TOKEN)
            lab.agent = agent[0]
            lab.wait_status(
                "every proxy to run revision 1",
                lambda s: (
                    set(s) == {ENVOY_ID, LOCAL_ID, AGENT_ID}
                    and all(p["current"] for p in s.values())
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
                lab.stop()
                lab.api.close()
                thread.close()


def test_a_killed_local_haproxy_is_reported_down_then_restarted(lab: Lab) -> None:
    """kill -9 of its master (its worker exits with it), while another process takes the
    port: the status says `restart failed` with HAProxy's message; once the port is free the
    supervisor starts it again on the same revision, and the status, the CLI and the metrics
    say so."""
    revision = lab.head()
    before = lab.local.processes()
    with pytest.raises(OSError):  # HAProxy holds its port without SO_REUSEPORT: not shared
        SharedPortListener(HAPROXY_HOST, lab.port)
    killed_at = time.time()
    os.kill(before.master.pid, signal.SIGKILL)
    for worker in before.workers:
        wait_gone(worker.pid)
    with SharedPortListener(HAPROXY_HOST, lab.port):
        failed = lab.wait_status(
            "the local HAProxy to be reported down",
            lambda s: (s[LOCAL_ID].get("health") or {}).get("state") == "restart failed",
        )[LOCAL_ID]
        assert not failed["current"] and failed["revision"] == revision, failed
        assert f"(pid {before.master.pid}) exited" in failed["health"]["reason"], failed
        assert "cannot bind socket" in failed["health"]["error"], failed
        assert lab.cli_row(LOCAL_ID).split()[4:6] == ["restart", "failed"]
        waited = lab.api.get("/v1/status/wait", params={"revision": revision, "timeout": 0})
        assert [p["id"] for p in waited.json()["pending"]] == [LOCAL_ID], waited.text

    restarted = lab.wait_status(
        "the local HAProxy to be restarted",
        lambda s: (s[LOCAL_ID].get("health") or {}).get("state") == "restarted",
    )[LOCAL_ID]
    assert restarted["current"] and restarted["revision"] == revision, restarted
    assert restarted["health"]["at"] > failed["health"]["at"] >= killed_at
    down, *failures, last = lab.events(LOCAL_ID)
    assert (down, set(failures), last) == ("down", {"restart failed"}, "restarted")
    assert http(HAPROXY_HOST, lab.port).backend == "web"
    assert lab.local.processes().master.pid != before.master.pid
    row = lab.cli_row(LOCAL_ID).split()
    assert (row[3], row[4:6]) == (str(revision), ["current,", "restarted"]), row
    restarts = 'controlplane_haproxy_restarts_total{group="edge",outcome="restarted"} 1.0'
    assert restarts in lab.api.get("/metrics").text.splitlines()
    assert lab.metric("controlplane_haproxy_restarts_total", 'outcome="failed"') >= 1
    print(f"\nlocal HAProxy: restart failed reported {failed['health']['at'] - killed_at:.3f}s ")


def test_a_killed_agent_haproxy_is_restarted_and_reported_through_the_agent(lab: Lab) -> None:
    revision = lab.head()
    assert lab.agent is not None
    worker = lab.agent.manager.processes().workers[0].pid
    killed_at = time.time()
    os.kill(worker, signal.SIGKILL)

    restarted = lab.wait_status(
        "the agent's HAProxy to be restarted",
        lambda s: (s[AGENT_ID].get("health") or {}).get("state") == "restarted",
    )[AGENT_ID]
    assert lab.events(AGENT_ID) == ["down", "restarted"]
    assert restarted["current"] and restarted["revision"] == revision, restarted
    assert f"worker ({worker}) exited" in restarted["health"]["reason"], restarted
    assert http(AGENT_HOST, lab.agent_port).backend == "web"
    assert lab.metric("controlplane_haproxy_restarts_total", 'group="agents"') == 1
    print(f"\nagent's HAProxy: restarted and reported {restarted['health']['at'] - killed_at:.3f}s")


def test_a_port_another_process_holds_is_a_nack_on_both_proxies(lab: Lab) -> None:
    """A new listener on a port a process holds with SO_REUSEPORT: Envoy and the local HAProxy
    both refuse it with their error, keep running the revision before, and not a connection
    reaches them."""
    good = lab.head()
    held = free_port()
    with (
        SharedPortListener(ENVOY_HOST, held) as at_envoy,
        SharedPortListener(HAPROXY_HOST, held) as at_haproxy,
    ):
        reply = lab.api.put("/v1/config", json=lab.config(held))
        assert reply.status_code == 200, reply.text
        refused = int(reply.headers["etag"].strip('"'))

        waited = lab.wait_revision(refused)
        assert sorted(p["id"] for p in waited["refused"]) == [ENVOY_ID, LOCAL_ID], waited
        errors = {p["id"]: p["error"] for p in waited["refused"]}
        assert "Address already in use" in errors[ENVOY_ID], errors
        assert "cannot bind socket" in errors[LOCAL_ID], errors
        proxies = lab.status()
        for node in (ENVOY_ID, LOCAL_ID):
            assert proxies[node]["revision"] == good and not proxies[node]["current"], proxies
            assert proxies[node]["last_nack"]["revision"] == refused
        assert proxies[AGENT_ID]["current"]  # the agents' group did not change

        assert connect_times(ENVOY_HOST, held, 20) == 20
        assert connect_times(HAPROXY_HOST, held, 20) == 20
        assert (at_envoy.accepted(), at_haproxy.accepted()) == (20, 20)
        assert http(ENVOY_HOST, lab.port).backend == "web"
        assert http(HAPROXY_HOST, lab.port).backend == "web"

    restored = int(lab.api.put("/v1/config", json=lab.config()).headers["etag"].strip('"'))
    assert lab.wait_revision(restored)["converged"]


def test_after_a_restart_the_polling_agent_is_listed_within_one_poll(lab: Lab) -> None:
    head = lab.head()
    lab.stop(keep_proxies=True)
    lab.start()
    started = time.monotonic()

    proxies = lab.wait_status(
        "the agent to be listed again",
        lambda s: AGENT_ID in s and s[AGENT_ID]["revision"] == head,
    )
    listed = time.monotonic() - started
    agent = proxies[AGENT_ID]
    assert agent["connected"] and agent["current"] and agent["kind"] == "haproxy", agent
    assert agent["group"] == "agents"
    print(f"\nafter the restart the agent was listed in {listed:.3f}s (its poll waits 30 s)")
    lab.wait_status("every proxy to be current", lambda s: all(p["current"] for p in s.values()))


def test_proxies_gone_for_longer_than_forget_after_are_dropped(tmp_path: Path) -> None:
    """With `forget_after` 1 s: an Envoy that stopped, an anonymous xDS stream that closed and
    an agent that stopped are dropped from the status; the local HAProxy stays."""
    thread = LoopThread()
    with BackendFleet() as backends:
        web = backends.start(BackendSpec("web"))
        seed = config(free_port(), free_port(), web.address)
        options = serve_options(tmp_path, seed, forget_after=1.0)
        lab = Lab(thread, options, (0, 0), web.address)
        try:
            lab.start()
            xds_port = lab.running.xds.port or 0
            agent = start_agent(lab.url, tmp_path / "agent", AGENT_ID, AGENT_TOKEN)
            with (
                EnvoyProcess(tmp_path, ENVOY_ID, "edge", xds_port).start(),
                AnonymousStream(xds_port, "edge"),
            ):
                lab.wait_status(
                    "everyone to be listed",
                    lambda s: (
                        {ENVOY_ID, LOCAL_ID, AGENT_ID} <= set(s)
                        and any(n.startswith("anonymous-") for n in s)
                    ),
                )
            stop_agent(*agent)
            gone_at = time.monotonic()

            lab.wait_status("only the local HAProxy to be left", lambda s: set(s) == {LOCAL_ID})
            dropped = time.monotonic() - gone_at
            print(f"\nforget_after 1 s: the gone proxies were dropped {dropped:.1f}s after")
        finally:
            lab.stop()
            lab.api.close()
            thread.close()


class AnonymousStream:
    """An ADS stream of a node without an id (the server names it `anonymous-PID-N`), open from
    the first answer until closed."""

    def __init__(self, port: int, group: str) -> None:
        self._closed = threading.Event()
        self._channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        node = base_pb2.Node(cluster=group)

        def requests() -> Iterator[discovery_pb2.DiscoveryRequest]:
            yield discovery_pb2.DiscoveryRequest(node=node, type_url=types.CLUSTER)
            self._closed.wait(WAIT * 4)

        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self._channel)
        self._call = stub.StreamAggregatedResources(requests())
        next(self._call)

    def __enter__(self) -> AnonymousStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed.set()
        self._call.cancel()
        self._channel.close()


def test_a_revision_the_server_cannot_apply_is_a_nack(tmp_path: Path) -> None:
    """The local HAProxy's manager fails (its binary is missing): a refusal of revision 1 with
    the error, not a failed push nobody sees."""
    seed = config(free_port(), free_port(), "127.0.0.1:9")
    options = serve_options(
        tmp_path,
        seed,
        targets=("haproxy",),
        haproxy_bin=str(tmp_path / "no-haproxy"),
        haproxy_bind=None,
    )
    thread = LoopThread()
    lab = Lab(thread, options, (0, 0), "127.0.0.1:9")
    try:
        lab.start()
        lab.wait_status("the refusal", lambda s: s.get(LOCAL_ID, {}).get("last_nack"))
        waited = lab.wait_revision(1)
        [refusal] = waited["refused"]
        assert (refusal["id"], refusal["refused_revision"]) == (LOCAL_ID, 1), waited
        assert refusal["error"].startswith("FileNotFoundError: "), refusal
        assert lab.status()[LOCAL_ID]["last_nack"]["revision"] == 1
    finally:
        lab.stop()
        lab.api.close()
        thread.close()
