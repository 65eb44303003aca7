"""A changed cluster is warmed again by Envoy at once: its endpoints are sent again with it.

Envoy re-initialises a cluster whose definition changed and waits for its endpoints (EDS)
before using it; a server that sends nothing because the endpoints did not change leaves the
cluster warming until Envoy's initial fetch timeout (15 s) and then runs on its cache.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from controlplane.model import Config, parse_config
from tests.harness.backends import BackendFleet, BackendSpec
from tests.harness.clients import http
from tests.harness.ports import free_port
from tests.harness.targets_envoy import EnvoyTarget

pytestmark = pytest.mark.envoy


def config(port: int, backend: str, connect_timeout: str) -> Config:
    return parse_config(
        {
            "listeners": [
                {
                    "name": "web",
                    "address": f"127.0.0.1:{port}",
                    "protocol": "http",
                    "virtual_hosts": [
                        {
                            "name": "site",
                            "domains": ["*"],
                            "routes": [{"backends": [{"cluster": "app"}]}],
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "app",
                    "connect_timeout": connect_timeout,
                    "endpoints": [{"address": backend}],
                }
            ],
        }
    )


@pytest.fixture(params=["sotw", "delta"])
def envoy(request: pytest.FixtureRequest) -> Iterator[EnvoyTarget]:
    target = EnvoyTarget(request.param)
    target.start()
    try:
        yield target
    finally:
        target.stop()


def test_a_changed_cluster_gets_its_endpoints_again_and_warms_at_once(envoy: EnvoyTarget) -> None:
    port = free_port()
    with BackendFleet() as backends:
        address = backends.start(BackendSpec("app")).address
        envoy.apply(config(port, address, "1s"), "default")
        for timeout in ("2s", "3s"):
            envoy.apply(config(port, address, timeout), "default")  # waits until warm
            assert http("127.0.0.1", port, "/").backend == "app"
        assert envoy.envoy is not None
        stats = envoy.envoy.stats()
        assert stats.get("cluster.app.init_fetch_timeout", 0) == 0
        assert stats["cluster_manager.cluster_modified"] == 2
