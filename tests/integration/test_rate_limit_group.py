"""`scope: group` on real proxies: the server divides a rate limit among the connected proxies
of the group, and gives each its new share when one leaves.

One group of two proxies, an Envoy fed over xDS and a server's own HAProxy (relocated onto
127.0.0.2), with a limit of 20 per minute per `x-user` shared by the group: each enforces 10.
When the Envoy stops, the HAProxy alone enforces the 20, one propagation later (what the
server pushes when it sees the Envoy go). Each phase counts a fresh user's requests, so a
bucket the proxies kept across a change cannot blur the count.

Played twice: with one server holding both proxies, and with two replicas sharing PostgreSQL,
`a` holding the Envoy and `b` running the HAProxy, where a group's size counts the proxies
every replica reports (`b` reads `a`'s report of the Envoy leaving).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controlplane.envoy.bootstrap import bootstrap_yaml
from controlplane.serve import ServeOptions
from tests.harness.backends import BackendFleet, BackendSpec
from tests.harness.clients import Response, http
from tests.harness.envoy import EnvoyProcess, wait_for
from tests.harness.loop_thread import LoopThread
from tests.harness.ports import free_port
from tests.harness.postgres import PostgresServer
from tests.harness.replicas import Api, ServeProcess
from tests.harness.served import ServedServer

pytestmark = [pytest.mark.envoy, pytest.mark.haproxy, pytest.mark.timeout(180)]

ENVOY_HOST, HAPROXY_HOST = "127.0.0.1", "127.0.0.2"
TOKEN = "group-limit-token-0123456789"
ENVOY_ID = "group-envoy"
WAIT = 30.0
LIMIT = 20

CONFIG = """\
listeners:
  - name: web
    address: {envoy}:{port}
    protocol: http
    virtual_hosts:
      - name: site
        domains: ["*"]
        routes:
          - rate_limit: {{requests: {limit}, per: 1m, key: {{header: x-user}}, scope: group}}
            backends: [{{cluster: api}}]
clusters:
  - {{name: api, endpoints: [{{address: "{api}"}}]}}
"""

_users = itertools.count()


@dataclass
class Group:
    """The group's two proxies serving one port, how to stop its Envoy, and what the status
    says of where each proxy is held."""

    port: int
    envoy: EnvoyProcess
    status: Callable[[], dict[str, Any]]

    def send(self, host: str, user: str) -> Response:
        return http(host, self.port, "/search", headers=[("x-user", user)], timeout=5)

    def bucket_size(self, host: str) -> str | None:
        """The bucket size a new user sees through the proxy on `host`."""
        return self.send(host, f"probe-{next(_users)}").headers.get("x-ratelimit-limit")

    def admitted(self, host: str, sent: int) -> int:
        """How many of `sent` requests of a new user the proxy on `host` lets through."""
        user = f"user-{next(_users)}"
        statuses = [self.send(host, user).status for _ in range(sent)]
        assert set(statuses) <= {200, 429}, statuses
        return statuses.count(200)


def seeded(directory: Path, port: int, api: str) -> tuple[Path, Path]:
    """The tokens file and the config file of the group, in `directory`."""
    tokens, config = directory / "tokens.yaml", directory / "config.yaml"
    tokens.write_text(f"- {{name: t, token: {TOKEN}, scopes: [read, write]}}\n")
    config.write_text(CONFIG.format(envoy=ENVOY_HOST, port=port, limit=LIMIT, api=api))
    return tokens, config


@pytest.fixture
def one_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Group]:
    """One server holding the Envoy's stream and running the HAProxy itself."""
    tmp = tmp_path_factory.mktemp("group-limit")
    port = free_port()
    with BackendFleet() as backends:
        tokens, config = seeded(tmp, port, backends.start(BackendSpec("api")).address)
        options = ServeOptions(
            db=tmp / "store.db",
            config=config,
            api="127.0.0.1:0",
            xds="127.0.0.1:0",
            tokens_file=tokens,
            haproxy_groups=("default",),
            haproxy_bind=HAPROXY_HOST,
            workdir=tmp / "run",
        )
        thread = LoopThread()
        server = ServedServer(thread, options, TOKEN)
        envoy: EnvoyProcess | None = None
        try:
            server.start()
            envoy = EnvoyProcess(tmp, ENVOY_ID, "default", server.running.xds.port or 0)
            envoy.start()
            yield Group(port, envoy, lambda: server.api.get("/v1/status").json())
        finally:
            try:
                if envoy is not None:
                    envoy.stop()
            finally:
                try:
                    server.stop()
                finally:
                    server.api.close()
                    thread.close()


@pytest.fixture
def two_replicas(
    postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Group]:
    """Replica `a` holding the Envoy's stream, replica `b` running the HAProxy."""
    tmp = tmp_path_factory.mktemp("group-replicas")
    db = postgres_server.create_database("group_replicas")
    port = free_port()
    started: list[ServeProcess] = []
    apis: list[Api] = []
    envoy: EnvoyProcess | None = None
    with BackendFleet() as backends:
        tokens, config = seeded(tmp, port, backends.start(BackendSpec("api")).address)
        local = ("--haproxy", "default", "--haproxy-bind", HAPROXY_HOST, "--haproxy-bin", "haproxy")
        try:
            for name, extra in (("a", ()), ("b", local)):
                started.append(ServeProcess(tmp, name, db, tokens, config, extra).start())
                apis.append(Api(started[-1], TOKEN))
            a = started[0]
            bootstrap = bootstrap_yaml(
                ENVOY_ID, "default", *a.xds, 0, retry_base_s=0.05, retry_max_s=0.5
            )
            envoy = EnvoyProcess(tmp, ENVOY_ID, "default", a.xds_port, bootstrap=bootstrap)
            envoy.start()
            yield Group(port, envoy, apis[1].status)
        finally:
            try:
                if envoy is not None:
                    envoy.stop()
            finally:
                for client in apis:
                    client.close()
                for replica in started:
                    replica.stop()
                postgres_server.drop_database("group_replicas")


def divided_then_whole(group: Group) -> None:
    """Each proxy enforces half the limit; once the Envoy stops, the HAProxy all of it."""
    half = str(LIMIT // 2)
    for host in (ENVOY_HOST, HAPROXY_HOST):
        wait_for(f"{host} to enforce half", lambda h=host: group.bucket_size(h) == half, WAIT)
    assert group.admitted(ENVOY_HOST, LIMIT) == LIMIT // 2
    assert group.admitted(HAPROXY_HOST, LIMIT) == LIMIT // 2

    group.envoy.stop()

    whole = str(LIMIT)
    wait_for(
        "the HAProxy to enforce the whole", lambda: group.bucket_size(HAPROXY_HOST) == whole, WAIT
    )
    assert group.admitted(HAPROXY_HOST, LIMIT + 5) == LIMIT


def test_a_group_limit_is_divided_among_the_connected_proxies_and_follows_membership(
    one_server: Group,
) -> None:
    divided_then_whole(one_server)


def test_two_replicas_each_holding_one_proxy_of_a_group_give_each_half_the_limit(
    two_replicas: Group,
) -> None:
    wait_for(
        "both replicas to report their proxy",
        lambda: len({p["id"] for p in two_replicas.status()["proxies"]}) == 2,
        WAIT,
    )
    holders = {p["id"]: p["detail"]["replica"] for p in two_replicas.status()["proxies"]}
    assert holders[ENVOY_ID] == "a" and set(holders.values()) == {"a", "b"}, holders
    divided_then_whole(two_replicas)
