"""The README's "Securing a deployment" commands work: its `openssl` commands make a CA and
certificates the xDS server and real Envoy accept with the SAN convention they describe, its
tokens file loads, and its `envoy-bootstrap` command gives a bootstrap Envoy validates."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from controlplane.api import TokenSet
from controlplane.xds import types
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.server import XdsServer, XdsTls
from tests.harness.envoy import envoy_binary
from tests.harness.xds_resources import http_snapshot

pytestmark = pytest.mark.envoy

README = Path(__file__).resolve().parents[2] / "README.md"


def section_commands() -> list[str]:
    """The section's `sh` blocks, in order."""
    text = README.read_text()
    section = text.split("## Securing a deployment\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def sh(script: str, cwd: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(
        ["sh", "-e", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("readme-pki")
    sh(section_commands()[0], directory)
    return directory


def test_the_openssl_commands_issue_certificates_of_one_ca(pki: Path) -> None:
    result = subprocess.run(
        ["openssl", "verify", "-CAfile", "ca.crt", "cp.internal.crt", "l7-envoy-1.crt"],
        cwd=pki,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


async def claim(pki: Path, client: str, node_id: str, group: str) -> grpc.StatusCode:
    """What the xDS server, with the README's server certificate, answers a stream from the
    holder of `client`'s certificate claiming node `node_id` of `group`."""
    cache = SnapshotCache()
    cache.set_snapshot(group, http_snapshot(10000, {"a": 8001}, [("/", "a")]))
    files = ("cp.internal.crt", "cp.internal.key", "ca.crt")
    server = XdsServer(cache, tls=XdsTls(*((pki / name).read_bytes() for name in files)))
    port = await server.start("127.0.0.1", 0)
    credentials = grpc.ssl_channel_credentials(
        (pki / "ca.crt").read_bytes(),
        (pki / f"{client}.key").read_bytes(),
        (pki / f"{client}.crt").read_bytes(),
    )
    options = [("grpc.ssl_target_name_override", "cp.internal")]
    try:
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials, options) as channel:
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
            call = stub.StreamAggregatedResources(timeout=10)
            node = base_pb2.Node(id=node_id, cluster=group)
            await call.write(discovery_pb2.DiscoveryRequest(node=node, type_url=types.LISTENER))
            try:
                await call.read()
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            call.cancel()
            return grpc.StatusCode.OK
    finally:
        await server.stop(None)


@pytest.mark.parametrize(
    ("client", "node_id", "group", "expected"),
    [
        ("l7-envoy-1", "l7-envoy-1", "l7", grpc.StatusCode.OK),
        ("l7-envoy-1", "l7-envoy-2", "l7", grpc.StatusCode.PERMISSION_DENIED),
        ("l7-envoy-1", "l7-envoy-1", "l4", grpc.StatusCode.PERMISSION_DENIED),
        ("l7-fleet", "l7-envoy-9", "l7", grpc.StatusCode.OK),
        ("l7-fleet", "l4-haproxy", "l4", grpc.StatusCode.PERMISSION_DENIED),
    ],
)
def test_the_client_certificates_name_what_their_proxy_may_claim(
    pki: Path, client: str, node_id: str, group: str, expected: grpc.StatusCode
) -> None:
    assert asyncio.run(claim(pki, client, node_id, group)) == expected


def test_the_tokens_file_has_an_agent_of_l4(tmp_path: Path) -> None:
    serve_block = section_commands()[1]
    sh(serve_block.split("controlplane serve", 1)[0], tmp_path)
    tokens = TokenSet.load(tmp_path / "tokens.yaml", environ={}).tokens
    assert [(t.name, sorted(t.scopes), sorted(t.groups)) for t in tokens] == [
        ("ops", ["read", "write"], []),
        ("l4-agents", ["agent"], ["l4"]),
    ]


def test_the_envoy_bootstrap_command_gives_a_bootstrap_envoy_validates(pki: Path) -> None:
    commands = re.sub(r"\\\n\s*", " ", section_commands()[2]).splitlines()
    [bootstrap] = [c for c in commands if c.startswith("controlplane envoy-bootstrap")]
    sh(bootstrap, pki)
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", "envoy.yaml", "--use-dynamic-base-id"],
        cwd=pki,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "transport_socket" in (pki / "envoy.yaml").read_text()
