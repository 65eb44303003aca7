"""The lab's files agree with each other and with the product: the compose file, its config
(compose/lab.yaml), the Envoy bootstrap and the lab command's list of proxies.

The lab running in Docker is tested in tests/docker; these hold without a Docker engine.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane.lab import commands
from controlplane.model import load_file, split_address

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose"
SERVICES: dict[str, Any] = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())["services"]


def controlplane(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controlplane.cli", *args], capture_output=True, text=True
    )


def address_of(service: str) -> str:
    return str(SERVICES[service]["networks"]["lab"]["ipv4_address"])


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def reporting_ids() -> dict[str, str]:
    """Each proxy service of the compose file and the id it reports under."""
    ids = {}
    for name, service in SERVICES.items():
        command = service.get("command", [])
        if "--service-node" in command:
            ids[name] = option(command, "--service-node")
        elif "CP_NODE" in service.get("environment", {}):
            ids[name] = service["environment"]["CP_NODE"]
    return ids


@pytest.mark.parametrize("target", ["envoy", "haproxy"])
def test_the_lab_config_is_valid_for_both_proxies(target: str) -> None:
    result = controlplane("validate", "--target", target, str(COMPOSE / "lab.yaml"))
    assert result.returncode == 0, result.stderr


def test_the_envoy_bootstrap_is_what_the_command_in_its_header_prints() -> None:
    text = (COMPOSE / "envoy.yaml").read_text()
    [line] = [line for line in text.splitlines() if line.startswith("#   controlplane ")]
    args = shlex.split(line.removeprefix("#   controlplane "))
    assert option(args, "--xds") == f"{address_of('cp')}:18000"
    printed = controlplane(*args)
    assert printed.returncode == 0, printed.stderr
    assert yaml.safe_load(text) == yaml.safe_load(printed.stdout)


def test_every_endpoint_of_the_config_is_a_service_of_the_compose_file() -> None:
    config = load_file(COMPOSE / "lab.yaml")
    addresses = {address_of(name): name for name in SERVICES}
    for cluster in config.clusters:
        for endpoint in cluster.endpoints:
            assert split_address(endpoint.address)[0] in addresses, (cluster.name, endpoint)
    fleet = {split_address(e.address)[0] for e in config.cluster("l7-fleet").endpoints}
    assert {addresses[ip] for ip in fleet} == {
        "l7-envoy-1",
        "l7-envoy-2",
        "l7-haproxy-1",
        "l7-haproxy-2",
    }


def test_the_lab_command_waits_for_every_proxy_of_the_compose_file() -> None:
    assert sorted(reporting_ids().values()) == sorted(commands.PROXIES)


def test_only_the_entries_and_the_api_are_published_on_loopback() -> None:
    published = {name: s["ports"] for name, s in SERVICES.items() if "ports" in s}
    assert set(published) == {"cp", "l4-haproxy", "l4-envoy"}
    for ports in published.values():
        assert all(port.startswith("127.0.0.1:") for port in ports)
    variables = {port.split(":")[1] for ports in published.values() for port in ports}
    assert {v.split(":-")[0].removeprefix("${") for v in variables} == set(commands.PORTS)


def test_every_service_runs_under_an_init_and_resolves_nothing_outside() -> None:
    for name, service in SERVICES.items():
        assert service["init"] is True, name
        assert service["dns"] == ["127.0.0.1"], name


def test_an_agent_shares_the_pid_namespace_and_workdir_of_its_haproxy() -> None:
    for name, service in SERVICES.items():
        if "CP_NODE" not in service.get("environment", {}):
            continue
        host = service["environment"]["CP_NODE"]
        assert service["pid"] == f"service:{host}", name
        assert f"{SERVICES[host]['volumes'][0].split(':')[0]}:/haproxy" in service["volumes"]


def test_lab_status_without_a_lab_is_one_line_and_exit_1(tmp_path: Path) -> None:
    result = controlplane("lab", "status", "--state-dir", str(tmp_path / "none"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"lab: no lab in {tmp_path / 'none'} (run `controlplane lab up`)"
    ]
