"""`serve --targets`: a server of Envoys only accepts what Envoy expresses, feeds its Envoys,
and compiles nothing for HAProxy; the same config is refused where HAProxy is fed too."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from controlplane.envoy.bootstrap import bootstrap_yaml
from tests.harness.backends import Backend, BackendFleet, BackendSpec
from tests.harness.clients import http
from tests.harness.envoy import EnvoyProcess, wait_for
from tests.harness.ports import free_port
from tests.harness.replicas import Api, ServeProcess

pytestmark = [pytest.mark.envoy, pytest.mark.timeout(120)]

TOKEN = "targets-token-0123456789"
AGENT_TOKEN = "targets-agent-token-0123456789"
TOKENS = (
    f"- {{name: lab, token: {TOKEN}, scopes: [read, write]}}\n"
    f"- {{name: agent, token: {AGENT_TOKEN}, scopes: [agent], groups: [default]}}\n"
)


def mirrored(port: int, app: Backend, shadow: Backend) -> dict[str, Any]:
    """Every request to `app`, copied to `shadow`: a mirror, which HAProxy cannot express."""
    return {
        "listeners": [
            {
                "name": "web",
                "address": f"127.0.0.1:{port}",
                "protocol": "http",
                "virtual_hosts": [
                    {
                        "name": "site",
                        "domains": ["*"],
                        "routes": [
                            {"backends": [{"cluster": "app"}], "mirrors": [{"cluster": "shadow"}]}
                        ],
                    }
                ],
            }
        ],
        "clusters": [
            {"name": "app", "endpoints": [{"address": app.address}]},
            {"name": "shadow", "endpoints": [{"address": shadow.address}]},
        ],
    }


def serve_command(*options: str) -> subprocess.CompletedProcess[str]:
    """`controlplane serve` run to its end (a refusal: it does not start)."""
    command = [str(Path(sys.executable).with_name("controlplane")), "serve", *options]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


@pytest.fixture
def backends() -> Iterator[tuple[Backend, Backend]]:
    with BackendFleet() as fleet:
        yield fleet.start(BackendSpec("app")), fleet.start(BackendSpec("shadow"))


def test_a_server_of_envoys_only_feeds_what_envoy_expresses_and_compiles_nothing_else(
    tmp_path: Path, backends: tuple[Backend, Backend]
) -> None:
    app, shadow = backends
    port = free_port()
    tokens, seed = tmp_path / "tokens.yaml", tmp_path / "config.yaml"
    tokens.write_text(TOKENS)
    seed.write_text(yaml.safe_dump(mirrored(port, app, shadow)))
    db = str(tmp_path / "store.db")
    server = ServeProcess(tmp_path, "envoys", db, tokens, seed, ["--targets", "envoy"])
    server.start()
    api = Api(server, TOKEN)
    envoy = EnvoyProcess(
        tmp_path, "edge-envoy", "default", server.xds_port,
        bootstrap=bootstrap_yaml("edge-envoy", "default", *server.xds, 0),
    )  # fmt: skip
    try:
        envoy.start()
        wait_for("the mirrored route", lambda: http("127.0.0.1", port, "/").backend == "app", 30)
        wait_for("its copy at the shadow", lambda: shadow.received > 0, 10)
        [proxy] = api.status()["proxies"]
        assert (proxy["id"], proxy["kind"], proxy["current"]) == ("edge-envoy", "envoy", True)
        bundle = httpx.get(
            f"{server.url}/v1/haproxy/default/bundle",
            headers={"Authorization": f"Bearer {AGENT_TOKEN}"},
        )
        assert bundle.status_code == 404, bundle.text
    finally:
        envoy.stop()
        api.close()
        server.stop()


def test_the_same_config_is_refused_by_a_server_that_feeds_haproxy_too(
    tmp_path: Path, backends: tuple[Backend, Backend]
) -> None:
    app, shadow = backends
    seed = tmp_path / "config.yaml"
    seed.write_text(yaml.safe_dump(mirrored(free_port(), app, shadow)))
    done = serve_command(
        "--db", str(tmp_path / "store.db"),
        "--config", str(seed),
        "--api", f"127.0.0.1:{free_port()}",
        "--xds", f"127.0.0.1:{free_port()}",
        "--insecure-local",
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "mirrors" in done.stderr and "haproxy" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unknown_target_is_a_one_line_refusal(tmp_path: Path) -> None:
    done = serve_command("--db", str(tmp_path / "store.db"), "--targets", "envoy,nginx")
    assert done.returncode == 2
    assert done.stderr.strip() == "--targets: choose among envoy, haproxy, comma-separated"
