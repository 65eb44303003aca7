"""`scope: group` on real proxies: the server divides a rate limit among the connected proxies
of the group, and gives each its new share when one leaves.

One group of two proxies, an Envoy fed over xDS and the server's own HAProxy (relocated onto
127.0.0.2), with a limit of 20 per minute per `x-user` shared by the group: each enforces 10.
When the Envoy stops, the HAProxy alone enforces the 20, one propagation later (what the
server pushes when the ledger sees the Envoy go). Each phase counts a fresh user's requests,
so a bucket the proxies kept across a change cannot blur the count.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from controlplane.serve import ServeOptions
from tests.harness.backends import BackendFleet, BackendSpec
from tests.harness.clients import Response, http
from tests.harness.envoy import EnvoyProcess, wait_for
from tests.harness.loop_thread import LoopThread
from tests.harness.ports import free_port
from tests.harness.served import ServedServer

pytestmark = [pytest.mark.envoy, pytest.mark.haproxy, pytest.mark.timeout(120)]

ENVOY_HOST = "127.0.0.1"
HAPROXY_HOST = "127.0.0.2"
TOKEN = "group-limit-token-0123456789"
WAIT = 15.0
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


class Group:
    """The server, its Envoy and its HAProxy, serving one group on the same port."""

    def __init__(self, server: ServedServer, envoy: EnvoyProcess, port: int) -> None:
        self.server, self.envoy, self.port = server, envoy, port

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


@pytest.fixture
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Group]:
    tmp = tmp_path_factory.mktemp("group-limit")
    port = free_port()
    tokens = tmp / "tokens.yaml"
    tokens.write_text(f"- {{name: t, token: {TOKEN}, scopes: [read, write]}}\n")
    with BackendFleet() as backends:
        api = backends.start(BackendSpec("api"))
        config = tmp / "config.yaml"
        config.write_text(CONFIG.format(envoy=ENVOY_HOST, port=port, limit=LIMIT, api=api.address))
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
            envoy = EnvoyProcess(tmp, "group-envoy", "default", server.running.xds.port or 0)
            envoy.start()
            yield Group(server, envoy, port)
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


def test_a_group_limit_is_divided_among_the_connected_proxies_and_follows_membership(
    group: Group,
) -> None:
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
