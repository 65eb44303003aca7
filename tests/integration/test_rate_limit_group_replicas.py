"""`scope: group` across replicas sharing PostgreSQL: a group's size counts the proxies every
replica holds, as the shared status reports them.

Two replicas `a` and `b` on one database; the group's Envoy is attached to `a` only, its
HAProxy is `b`'s own (relocated onto 127.0.0.2). With a limit of 20 per minute per `x-user`
shared by the group, each proxy enforces 10, although each replica holds one of them. When
the Envoy stops, `b` reads `a`'s report of it and gives its HAProxy the whole 20. Each phase
counts a fresh user's requests, so a bucket kept across a change cannot blur the count.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from controlplane.envoy.bootstrap import bootstrap_yaml
from tests.harness.backends import BackendFleet, BackendSpec
from tests.harness.clients import http
from tests.harness.envoy import EnvoyProcess, wait_for
from tests.harness.ports import free_port
from tests.harness.postgres import PostgresServer
from tests.harness.replicas import Api, ServeProcess

pytestmark = [pytest.mark.envoy, pytest.mark.haproxy, pytest.mark.timeout(180)]

ENVOY_HOST, HAPROXY_HOST = "127.0.0.1", "127.0.0.2"
TOKEN = "group-replicas-token-0123456789"
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
class Replicated:
    """Replica `a` holding the group's Envoy, replica `b` running its HAProxy."""

    apis: dict[str, Api]
    envoy: EnvoyProcess
    port: int

    def bucket_size(self, host: str) -> str | None:
        """The bucket size a new user sees through the proxy on `host`."""
        answer = http(host, self.port, "/search", headers=[("x-user", f"probe-{next(_users)}")])
        return answer.headers.get("x-ratelimit-limit")

    def admitted(self, host: str, sent: int) -> int:
        """How many of `sent` requests of a new user the proxy on `host` lets through."""
        user = f"user-{next(_users)}"
        statuses = [
            http(host, self.port, "/search", headers=[("x-user", user)], timeout=5).status
            for _ in range(sent)
        ]
        assert set(statuses) <= {200, 429}, statuses
        return statuses.count(200)


@pytest.fixture
def replicated(
    postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicated]:
    tmp = tmp_path_factory.mktemp("group-replicas")
    db = postgres_server.create_database("group_replicas")
    tokens, seed = tmp / "tokens.yaml", tmp / "config.yaml"
    tokens.write_text(f"- {{name: t, token: {TOKEN}, scopes: [read, write]}}\n")
    port = free_port()
    started: list[ServeProcess] = []
    apis: dict[str, Api] = {}
    envoy: EnvoyProcess | None = None
    with BackendFleet() as fleet:
        api = fleet.start(BackendSpec("api"))
        seed.write_text(CONFIG.format(envoy=ENVOY_HOST, port=port, limit=LIMIT, api=api.address))
        local = ("--haproxy", "default", "--haproxy-bind", HAPROXY_HOST, "--haproxy-bin", "haproxy")
        try:
            for name, extra in (("a", ()), ("b", local)):
                replica = ServeProcess(tmp, name, db, tokens, seed, extra)
                started.append(replica.start())
                apis[name] = Api(replica, TOKEN)
            a = started[0]
            bootstrap = bootstrap_yaml(
                ENVOY_ID, "default", *a.xds, 0, retry_base_s=0.05, retry_max_s=0.5
            )
            envoy = EnvoyProcess(tmp, ENVOY_ID, "default", a.xds_port, bootstrap=bootstrap)
            envoy.start()
            yield Replicated(apis, envoy, port)
        finally:
            try:
                if envoy is not None:
                    envoy.stop()
            finally:
                for client in apis.values():
                    client.close()
                for replica in started:
                    replica.stop()
                postgres_server.drop_database("group_replicas")


def test_two_replicas_each_holding_one_proxy_of_a_group_give_each_half_the_limit(
    replicated: Replicated,
) -> None:
    half = str(LIMIT // 2)
    for host in (ENVOY_HOST, HAPROXY_HOST):
        wait_for(f"{host} to enforce half", lambda h=host: replicated.bucket_size(h) == half, WAIT)
    holders = {p["id"]: p["detail"]["replica"] for p in replicated.apis["b"].status()["proxies"]}
    assert holders[ENVOY_ID] == "a" and set(holders.values()) == {"a", "b"}, holders
    assert replicated.admitted(ENVOY_HOST, LIMIT) == LIMIT // 2
    assert replicated.admitted(HAPROXY_HOST, LIMIT) == LIMIT // 2

    replicated.envoy.stop()

    whole = str(LIMIT)
    wait_for(
        "the HAProxy of replica b to enforce the whole",
        lambda: replicated.bucket_size(HAPROXY_HOST) == whole,
        WAIT,
    )
    assert replicated.admitted(HAPROXY_HOST, LIMIT + 5) == LIMIT
