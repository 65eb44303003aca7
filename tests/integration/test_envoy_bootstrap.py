"""The node bootstrap is accepted by the real Envoy."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from controlplane.envoy.bootstrap import XDS_CLUSTER, bootstrap, bootstrap_yaml
from tests.harness.envoy import envoy_binary

pytestmark = pytest.mark.envoy


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
@pytest.mark.parametrize("xds_host", ["127.0.0.1", "controlplane.internal"])
def test_envoy_validates_the_bootstrap(tmp_path: Path, delta: bool, xds_host: str) -> None:
    path = tmp_path / "bootstrap.yaml"
    path.write_text(bootstrap_yaml("node-1", "edge", xds_host, 18000, 19000, delta))
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--use-dynamic-base-id"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_bootstrap_fetches_everything_over_ads() -> None:
    config = bootstrap("node-1", "edge", "127.0.0.1", 18000, 19000, delta=True)
    assert config["node"] == {"id": "node-1", "cluster": "edge"}
    dynamic = config["dynamic_resources"]
    assert dynamic["ads_config"]["api_type"] == "DELTA_GRPC"
    assert dynamic["ads_config"]["transport_api_version"] == "V3"
    assert dynamic["cds_config"]["ads"] == {} and dynamic["lds_config"]["ads"] == {}
    (xds,) = config["static_resources"]["clusters"]
    assert xds["name"] == XDS_CLUSTER and xds["type"] == "STATIC"
    admin = config["admin"]["address"]["socket_address"]
    assert admin == {"address": "127.0.0.1", "port_value": 19000}
    assert yaml.safe_load(bootstrap_yaml("n", "g", "127.0.0.1", 1, 2)) == bootstrap(
        "n", "g", "127.0.0.1", 1, 2
    )
