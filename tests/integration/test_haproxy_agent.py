"""The HAProxy agent end to end: a real HAProxy fed by the agent from the serving side over HTTP.

The server is a FastAPI app holding only the agent router (uvicorn on a free port), fed by an
in-memory `GroupBundles`; the agent runs in a thread with a real HAProxy; backends say who
they are, so traffic shows which configuration HAProxy runs.
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request, Response

from controlplane.feed.bundles import GroupBundles
from controlplane.feed.http import agent_router
from controlplane.fleet import AgentLedger
from controlplane.fleet.ledger import HAPROXY_TYPE, Ledger, ProxyStatus
from controlplane.haproxy.bundle import Bundle
from controlplane.model import Config, parse_config
from controlplane.proxies.haproxy.agent import HAProxyAgent
from tests.harness.backends import BackendFleet, BackendSpec
from tests.harness.clients import http
from tests.harness.feed import publish as publish_config
from tests.harness.ports import free_port

LOOPBACK = "127.0.0.1"
INSTANCE = "agent-1"
DEADLINE = 15.0


def config(
    listen_port: int, fleet: BackendFleet, cluster: str, alpha_at: str | None = None
) -> Config:
    """One listener whose only route sends everything to `cluster` (alpha → a, or `alpha_at`;
    beta → b)."""
    return parse_config(
        {
            "listeners": [
                {
                    "name": "web",
                    "address": f"{LOOPBACK}:{listen_port}",
                    "protocol": "http",
                    "virtual_hosts": [
                        {
                            "name": "site",
                            "domains": ["*"],
                            "routes": [{"name": "all", "backends": [{"cluster": cluster}]}],
                        }
                    ],
                }
            ],
            "clusters": [
                {"name": "alpha", "endpoints": [{"address": alpha_at or fleet["a"].address}]},
                {"name": "beta", "endpoints": [{"address": fleet["b"].address}]},
            ],
        }
    )


class ServerThread:
    """Uvicorn serving `app` on a fixed port from a thread; can be stopped and started again."""

    def __init__(self, app: FastAPI, port: int) -> None:
        self.app = app
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host=LOOPBACK,
                port=self.port,
                log_config=None,
                lifespan="off",
                timeout_graceful_shutdown=1,
            )
        )
        thread = threading.Thread(target=server.run, name="agent-api", daemon=True)
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + DEADLINE
        while not server.started:
            assert thread.is_alive(), f"uvicorn did not start on port {self.port}"
            assert time.monotonic() < deadline, "uvicorn did not start in time"
            time.sleep(0.005)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(DEADLINE)
            assert not self._thread.is_alive(), "uvicorn did not stop"
        self._server = self._thread = None


@dataclass
class Stack:
    """Backends, the serving side, and an agent with its HAProxy."""

    fleet: BackendFleet
    source: GroupBundles
    ledger: Ledger
    server: ServerThread
    agent: HAProxyAgent
    listen_port: int
    polls: list[dict[str, Any]] = field(default_factory=list)
    thread: threading.Thread | None = None

    def publish(self, revision: int, cluster: str) -> str:
        """Publish the config routing to `cluster`; returns the bundle version it gives."""
        publish_config(self.source, revision, config(self.listen_port, self.fleet, cluster))
        current = self.source.current("default")
        assert current is not None
        return current.bundle.version

    def backend(self) -> str | None:
        return http(LOOPBACK, self.listen_port, timeout=2.0).backend

    def wait_for_backend(self, name: str) -> None:
        deadline = time.monotonic() + DEADLINE
        seen: str | None = None
        while time.monotonic() < deadline:
            try:
                seen = self.backend()
            except OSError as exc:
                seen = repr(exc)
            if seen == name:
                return
            time.sleep(0.01)
        pytest.fail(f"traffic did not reach backend {name} in time (last: {seen})")

    def proxy(self) -> ProxyStatus | None:
        return self.ledger.get(INSTANCE)

    def wait_for_report(self, check: Callable[[ProxyStatus], bool]) -> ProxyStatus:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            proxy = self.proxy()
            if proxy is not None and check(proxy):
                return proxy
            time.sleep(0.01)
        pytest.fail(f"the ledger did not show the expected report in time: {self.proxy()}")

    def wait_for_ack(self, version: str) -> ProxyStatus:
        return self.wait_for_report(lambda p: p.types[HAPROXY_TYPE].version_acked == version)


def recording_app(source: GroupBundles, ledger: Ledger, polls: list[dict[str, Any]]) -> FastAPI:
    """The agent router under /v1, recording each bundle request's query and answer status."""
    app = FastAPI()
    app.include_router(agent_router(source, AgentLedger(ledger)), prefix="/v1")

    @app.middleware("http")
    async def record(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Any:
        response = await call_next(request)
        if request.url.path.endswith("/bundle"):
            polls.append({**request.query_params, "status": response.status_code})
        return response

    return app


@pytest.fixture
def stack() -> Iterator[Stack]:
    with BackendFleet() as fleet, tempfile.TemporaryDirectory(prefix="hxa-") as workdir:
        fleet.start(BackendSpec("a"))
        fleet.start(BackendSpec("b"))
        source, ledger, polls = GroupBundles(), Ledger(), []
        server = ServerThread(recording_app(source, ledger, polls), free_port())
        server.start()
        agent = HAProxyAgent(
            server.url,
            "default",
            Path(workdir) / "hx",
            haproxy_bin="/usr/sbin/haproxy",
            instance_id=INSTANCE,
            token="s3cret-token",
            poll_wait=1.0,
            backoff_initial=0.05,
            backoff_max=0.5,
        )
        thread = threading.Thread(target=agent.run, name="haproxy-agent", daemon=True)
        try:
            thread.start()
            yield Stack(fleet, source, ledger, server, agent, free_port(), polls, thread)
        finally:
            agent.stop()
            server.stop()
            thread.join(DEADLINE)
            agent.manager.stop()
            assert not thread.is_alive(), "the agent did not stop"


@pytest.mark.haproxy
def test_traffic_follows_published_route_changes(stack: Stack) -> None:
    first = stack.publish(1, "alpha")
    stack.wait_for_backend("a")
    proxy = stack.wait_for_ack(first)
    assert (proxy.kind, proxy.group, proxy.detail["mode"]) == ("haproxy", "default", "start")

    second = stack.publish(2, "beta")
    assert second != first
    stack.wait_for_backend("b")
    proxy = stack.wait_for_ack(second)
    assert proxy.detail["mode"] in ("runtime", "reload")
    assert proxy.detail["revision"] == 2
    assert proxy.types[HAPROXY_TYPE].last_nack is None


@pytest.mark.haproxy
def test_an_endpoint_that_moves_reaches_haproxy_by_a_reload_that_retires_the_old_workers(
    stack: Stack,
) -> None:
    """The runtime table travels with the bundle: the agent's HAProxy reloads for a new
    endpoint address (its idle connections to the old one would be reused after `set server
    addr`) and ACKs once the previous workers, which still reach the old address, are gone."""
    first = stack.publish(1, "alpha")
    stack.wait_for_ack(first)
    stack.wait_for_backend("a")
    reloads = stack.agent.manager.reload_count()

    moved = config(stack.listen_port, stack.fleet, "alpha", alpha_at=stack.fleet["b"].address)
    publish_config(stack.source, 2, moved)
    current = stack.source.current("default")
    assert current is not None
    proxy = stack.wait_for_ack(current.bundle.version)
    assert proxy.detail["mode"] == "reload", proxy.detail
    assert f"-> {stack.fleet['b'].address}" in proxy.detail["reason"]
    assert "previous workers gone" in proxy.detail["reason"]
    stack.wait_for_backend("b")
    assert stack.agent.manager.reload_count() == reloads + 1


@pytest.mark.haproxy
def test_a_rejected_bundle_is_nacked_once_and_traffic_keeps_flowing(stack: Stack) -> None:
    good = stack.publish(1, "alpha")
    stack.wait_for_ack(good)
    current = stack.source.current("default")
    assert current is not None
    broken = Bundle.of(
        current.bundle.cfg + "    http-request frobnicate-now\n",
        current.bundle.map_entries,
        current.bundle.files,
    )
    stack.source.put("default", 2, broken)

    proxy = stack.wait_for_report(
        lambda p: (
            (nack := p.types[HAPROXY_TYPE].last_nack) is not None and nack.version == broken.version
        )
    )
    nack = proxy.types[HAPROXY_TYPE].last_nack
    assert nack is not None
    assert "[ALERT]" in nack.error and "frobnicate-now" in nack.error
    assert proxy.types[HAPROXY_TYPE].version_acked == good
    assert stack.backend() == "a"

    # The agent parks on the refused version: a poll with known=<broken> times out with 304,
    # and the version was applied (and reported) exactly once.
    deadline = time.monotonic() + DEADLINE
    while not any(
        p.get("known") == broken.version and p["status"] == 304 for p in list(stack.polls)
    ):
        assert time.monotonic() < deadline, f"the agent did not park: {stack.polls[-5:]}"
        time.sleep(0.01)
    proxy = stack.proxy()
    assert proxy is not None
    refusals = [e for e in proxy.events if e.version == broken.version]
    assert [e.action for e in refusals] == ["nack"]
    assert stack.backend() == "a"

    fixed = stack.publish(3, "beta")
    stack.wait_for_backend("b")
    stack.wait_for_ack(fixed)


@pytest.mark.haproxy
def test_the_agent_reconnects_after_a_server_restart_and_catches_up(stack: Stack) -> None:
    first = stack.publish(1, "alpha")
    stack.wait_for_ack(first)
    stack.wait_for_backend("a")

    stack.server.stop()
    changed = stack.publish(2, "beta")
    assert stack.backend() == "a", "HAProxy must keep serving while the server is away"

    stack.server.start()
    stack.wait_for_backend("b")
    stack.wait_for_ack(changed)


@pytest.mark.haproxy
def test_the_token_is_never_logged(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    version = stack.publish(1, "alpha")
    stack.wait_for_ack(version)
    stack.server.stop()
    deadline = time.monotonic() + DEADLINE
    while "control plane" not in caplog.text:
        assert time.monotonic() < deadline, "the agent did not log the outage"
        time.sleep(0.01)
    assert "s3cret-token" not in caplog.text


def test_a_long_poll_ends_when_its_client_leaves() -> None:
    """A waiting request whose client closed the connection stops waiting at once."""
    source = GroupBundles()
    bundle = Bundle.of("defaults\n    option idle-close-on-response\n")
    source.put("default", 1, bundle)
    server = ServerThread(recording_app(source, Ledger(), []), free_port())
    server.start()
    try:
        with socket.create_connection((LOOPBACK, server.port), timeout=5) as client:
            client.sendall(
                f"GET /v1/haproxy/default/bundle?known={bundle.version}&wait=60 HTTP/1.1\r\n"
                "Host: test\r\n\r\n".encode()
            )
            deadline = time.monotonic() + DEADLINE
            while source.waiting() != 1:
                assert time.monotonic() < deadline, "the request did not start waiting"
                time.sleep(0.005)
        deadline = time.monotonic() + DEADLINE
        while source.waiting() != 0:
            assert time.monotonic() < deadline, "the long poll outlived its client"
            time.sleep(0.005)
    finally:
        server.stop()


@pytest.mark.haproxy
def test_a_version_that_fails_to_start_is_retried(stack: Stack) -> None:
    """Valid but not startable (its port is taken): a NACK, then the same version again later."""
    with socket.socket() as squatter:
        squatter.bind((LOOPBACK, stack.listen_port))
        squatter.listen()
        version = stack.publish(1, "alpha")
        proxy = stack.wait_for_report(lambda p: p.types[HAPROXY_TYPE].last_nack is not None)
        nack = proxy.types[HAPROXY_TYPE].last_nack
        assert nack is not None and nack.version == version
        assert proxy.detail["mode"] == "start"
    stack.wait_for_ack(version)
    stack.wait_for_backend("a")


@pytest.mark.haproxy
def test_a_restarted_agent_adopts_the_running_haproxy(stack: Stack) -> None:
    """An agent that dies leaves HAProxy serving; the next agent of the same workdir takes it
    over, and the bundle it already runs needs no reload."""
    version = stack.publish(1, "alpha")
    stack.wait_for_ack(version)
    first = stack.agent
    master = first.manager.processes().master.pid
    first.manager.detach()  # as if the agent were killed: HAProxy is left running
    first.stop()
    assert stack.thread is not None
    stack.thread.join(DEADLINE)
    assert stack.backend() == "a"

    second = HAProxyAgent(
        stack.server.url,
        "default",
        first.manager.workdir,
        haproxy_bin="/usr/sbin/haproxy",
        instance_id=INSTANCE,
        poll_wait=1.0,
    )
    thread = threading.Thread(target=second.run, name="haproxy-agent-2", daemon=True)
    thread.start()
    try:
        stack.wait_for_report(lambda p: p.detail.get("mode") == "unchanged")
        assert second.manager.processes().master.pid == master
        assert second.manager.reload_count() == 0
        assert stack.backend() == "a"
    finally:
        second.stop()
        thread.join(DEADLINE)
        second.manager.stop()
