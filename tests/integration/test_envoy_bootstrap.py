"""The node bootstrap is accepted by the real Envoy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from controlplane.envoy.bootstrap import XDS_CLUSTER, XdsClientTls, bootstrap, bootstrap_yaml
from controlplane.xds.identity import node_uri
from tests.harness.envoy import envoy_binary
from tests.harness.pki import TestPki

pytestmark = pytest.mark.envoy


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
@pytest.mark.parametrize("xds_host", ["127.0.0.1", "controlplane.internal"])
@pytest.mark.parametrize("mtls", [False, True], ids=["plain", "mtls"])
def test_envoy_validates_the_bootstrap(
    tmp_path: Path, delta: bool, xds_host: str, mtls: bool
) -> None:
    tls = None
    if mtls:
        pki = TestPki(tmp_path / "pki")
        node = pki.client("node-1", (node_uri("edge", "node-1"),))
        tls = XdsClientTls(str(pki.ca), str(node.cert), str(node.key))
    path = tmp_path / "bootstrap.yaml"
    path.write_text(bootstrap_yaml("node-1", "edge", xds_host, 18000, 19000, delta, tls=tls))
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--use-dynamic-base-id"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_bootstrap_fetches_everything_over_ads() -> None:
    config = bootstrap("node-1", "edge", "127.0.0.1", 18000, 19000, delta=True)
    assert config["node"] == {
        "id": "node-1",
        "cluster": "edge",
        "metadata": {"controlplane.admin": "127.0.0.1:19000"},  # read by status --verify
    }
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
    assert "transport_socket" not in xds  # plain text unless told otherwise


@pytest.mark.parametrize(
    ("xds_host", "san_type"), [("127.0.0.1", "IP_ADDRESS"), ("cp.internal", "DNS")]
)
def test_an_mtls_bootstrap_presents_the_node_certificate_and_checks_the_server_name(
    xds_host: str, san_type: str
) -> None:
    tls = XdsClientTls("/etc/cp/ca.crt", "/etc/cp/node.crt", "/etc/cp/node.key")
    (xds,) = bootstrap("n", "g", xds_host, 18000, 9901, tls=tls)["static_resources"]["clusters"]
    context = xds["transport_socket"]["typed_config"]
    common = context["common_tls_context"]
    assert common["tls_certificates"] == [
        {"certificate_chain": {"filename": tls.cert}, "private_key": {"filename": tls.key}}
    ]
    assert common["validation_context"] == {
        "trusted_ca": {"filename": tls.ca},
        "match_typed_subject_alt_names": [{"san_type": san_type, "matcher": {"exact": xds_host}}],
    }
    assert common["alpn_protocols"] == ["h2"]
    assert context.get("sni") == (None if san_type == "IP_ADDRESS" else xds_host)


def test_several_xds_servers_are_endpoints_of_one_xds_cluster(tmp_path: Path) -> None:
    """`envoy-bootstrap --xds a:18000,b:18000`: the replicas of a control plane, one cluster
    (Envoy refuses two `grpc_services` without a restart), accepted by the real Envoy."""
    command = str(Path(sys.executable).with_name("controlplane"))
    done = subprocess.run(
        [command, "envoy-bootstrap", "--node-id", "n1", "--group", "edge",
         "--xds", "127.0.0.1:18000,127.0.0.2:18001, 127.0.0.1:18000"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    [grpc] = config["dynamic_resources"]["ads_config"]["grpc_services"]
    assert grpc["envoy_grpc"]["cluster_name"] == XDS_CLUSTER
    (xds,) = config["static_resources"]["clusters"]
    [locality] = xds["load_assignment"]["endpoints"]
    addresses = [e["endpoint"]["address"]["socket_address"] for e in locality["lb_endpoints"]]
    assert addresses == [
        {"address": "127.0.0.1", "port_value": 18000},
        {"address": "127.0.0.2", "port_value": 18001},
    ]
    path = tmp_path / "bootstrap.yaml"
    path.write_text(done.stdout)
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--use-dynamic-base-id"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_bad_xds_server_among_several_is_one_line_and_exit_2() -> None:
    command = str(Path(sys.executable).with_name("controlplane"))
    done = subprocess.run(
        [command, "envoy-bootstrap", "--node-id", "n1", "--xds", "127.0.0.1:18000,nowhere"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "--xds" in done.stderr, done.stderr


def test_a_tls_bootstrap_for_several_servers_accepts_a_certificate_naming_any() -> None:
    tls = XdsClientTls("/ca.pem", "/node.pem", "/node.key")
    config = bootstrap(
        "n", "g", "cp-a.internal", 1, 2, tls=tls, also_xds=[("cp-b.internal", 1), ("10.0.0.3", 1)]
    )
    (xds,) = config["static_resources"]["clusters"]
    assert xds["type"] == "STRICT_DNS"
    context = xds["transport_socket"]["typed_config"]
    names = context["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"]
    assert names == [
        {"san_type": "DNS", "matcher": {"exact": "cp-a.internal"}},
        {"san_type": "DNS", "matcher": {"exact": "cp-b.internal"}},
        {"san_type": "IP_ADDRESS", "matcher": {"exact": "10.0.0.3"}},
    ]
