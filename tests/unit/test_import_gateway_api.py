"""`controlplane import gateway-api`: the Gateway API resources of each translated conformance
case (tests/scenarios/cases/gateway-api/manifests/) import as that case's scenario config;
what cannot be carried over is named, a line each; nothing importable is exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane.model import parse_config
from tests.scenarios.addressing import concrete_data
from tests.scenarios.loading import load_scenario

CASES = Path(__file__).parents[1] / "scenarios" / "cases" / "gateway-api"
MANIFESTS = CASES / "manifests"
BASE = MANIFESTS / "base.yaml"
IMPORTED = sorted(p for p in MANIFESTS.glob("*.yaml") if p != BASE)


def controlplane(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controlplane.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def normalized(data: dict[str, Any]) -> dict[str, Any]:
    """The config as the model reads it, clusters in name order."""
    dumped = parse_config(data).model_dump(mode="json")
    dumped["clusters"].sort(key=lambda cluster: cluster["name"])
    return dumped


def test_every_playable_case_has_its_manifests() -> None:
    playable = {p.stem for p in CASES.glob("*.yaml") if load_scenario(p).playable}
    assert playable == {p.stem for p in IMPORTED}


@pytest.mark.parametrize("manifest", IMPORTED, ids=[p.stem for p in IMPORTED])
def test_the_manifests_of_a_case_import_as_its_config(manifest: Path, tmp_path: Path) -> None:
    scenario = load_scenario(CASES / manifest.name)
    addresses = {b.name: f"127.0.0.1:{20000 + i}" for i, b in enumerate(scenario.backends)}
    listeners = {x["name"]: x["address"] for x in (scenario.config or {})["listeners"]}
    expected = concrete_data(scenario, addresses, listeners)
    services = tmp_path / "backends.yaml"
    services.write_text(yaml.safe_dump(addresses))
    result = controlplane("import", "gateway-api", BASE, manifest, "--backends", services)
    assert result.returncode == 0, result.stderr
    assert normalized(yaml.safe_load(result.stdout)) == normalized(expected)


def test_what_cannot_be_carried_over_is_named_a_line_each(tmp_path: Path) -> None:
    services = tmp_path / "backends.yaml"
    services.write_text("infra-backend-v1: 127.0.0.1:20000\n")
    manifest = MANIFESTS / "httproute-hostname-intersection.yaml"
    result = controlplane("import", "gateway-api", manifest, "--backends", services)
    assert result.returncode == 0, result.stderr
    dropped = result.stderr.splitlines()
    assert all(line.startswith(f"dropped: {manifest}: HTTPRoute/") for line in dropped)
    assert (
        f"dropped: {manifest}: HTTPRoute/no-intersecting-hosts: shares no hostname with the "
        "listeners it attaches to" in dropped
    )
    unknown = "rules[0] backendRefs[0]: Service infra-backend-v3 is not in the --backends mapping"
    route = "HTTPRoute/wildcard-host-matches-listener-specific-host"
    assert f"dropped: {manifest}: {route} {unknown}" in dropped
    assert "infra-backend-v3" not in result.stdout


def test_a_redirect_rule_forwards_nothing_and_says_its_backends_are_left_out(
    tmp_path: Path,
) -> None:
    services = tmp_path / "backends.yaml"
    services.write_text("infra-backend-v1: 127.0.0.1:20000\n")
    manifest = MANIFESTS / "httproute-redirect-host-and-status.yaml"
    result = controlplane("import", "gateway-api", BASE, manifest, "--backends", services)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"dropped: {manifest}: HTTPRoute/redirect rules[{i}] backendRefs: the rule answers "
        "itself (a filter's answer)"
        for i in (0, 2)
    ]
    assert "infra-backend-v1" not in result.stdout


def test_nothing_importable_is_exit_2_with_the_reasons(tmp_path: Path) -> None:
    services = tmp_path / "backends.yaml"
    services.write_text("{}\n")
    route = tmp_path / "route.yaml"
    route.write_text(
        "kind: HTTPRoute\nmetadata: {name: r}\n"
        "spec: {parentRefs: [{name: elsewhere}], rules: [{filters: [{type: ExternalAuth}]}]}\n"
    )
    result = controlplane("import", "gateway-api", route, "--backends", services)
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"dropped: {route}: HTTPRoute/r rules[0] filters[0]: the ExternalAuth filter" in (
        result.stderr
    )
    assert "Gateway elsewhere is not among the files" in result.stderr
    assert result.stderr.splitlines()[-1] == "nothing could be imported: no listener with a route"


def test_unreadable_input_is_exit_2_naming_the_file(tmp_path: Path) -> None:
    services = tmp_path / "backends.yaml"
    services.write_text("infra: [1]\n")
    result = controlplane("import", "gateway-api", BASE, "--backends", services)
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"{services}: infra: expected an address (host:port) or a list of them"
    )
    services.write_text("infra: 127.0.0.1:20000\n")
    missing = tmp_path / "missing.yaml"
    result = controlplane("import", "gateway-api", missing, "--backends", services)
    assert result.returncode == 2
    assert result.stderr.strip() == f"{missing}: No such file or directory"
