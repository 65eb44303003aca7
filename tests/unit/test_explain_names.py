"""The names `explain` gives per proxy are the names the compilers emit: for every request of
every scenario, Envoy's listener, filter chain, route configuration, virtual host, route and
clusters are in `translate`'s resources, and HAProxy's frontend, map entries, route id,
backends and servers are in `render`'s bundle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from controlplane.envoy import translate
from controlplane.explain import explain
from controlplane.haproxy.render import render
from controlplane.model import PROXY_KINDS, Config, ProxyKind, target_issues
from tests.scenarios.addressing import concrete_config, listener_names
from tests.scenarios.explained import request_of
from tests.scenarios.loading import load_scenario, scenario_files
from tests.scenarios.sending import ListenerAt

CASES = Path(__file__).resolve().parents[1] / "scenarios" / "cases"
FILES = scenario_files(CASES)


def played(path: Path) -> tuple[Config, str, list[Any]]:
    scenario = load_scenario(path)
    backends = {b.name: f"127.0.0.1:{20000 + i}" for i, b in enumerate(scenario.backends)}
    ports = {name: 30000 + i for i, name in enumerate(listener_names(scenario))}
    config = concrete_config(
        scenario, backends, {name: f"127.0.0.1:{port}" for name, port in ports.items()}
    )
    protocols = {x.name: x.protocol for x in config.listeners}
    requests = [
        request_of(step, ListenerAt(ports[step.listener], protocols[step.listener]))
        for step in scenario.requests
    ]
    return config, scenario.group, requests


def envoy_has(resources: Any, names: dict[str, Any]) -> None:
    data = resources.to_dict()
    listener = next(x for x in data["listeners"] if x["name"] == names["listener"])
    if "filter_chain" in names:
        chains = [c.get("name") for c in listener.get("filter_chains", [])]
        chains.append(listener.get("default_filter_chain", {}).get("name"))
        assert names["filter_chain"] in chains
    if "route_configuration" in names:
        routes = next(r for r in data["routes"] if r["name"] == names["route_configuration"])
        if "virtual_host" in names:
            vhost = next(v for v in routes["virtual_hosts"] if v["name"] == names["virtual_host"])
            if "route" in names:
                assert f'"name": {json.dumps(names["route"])}' in json.dumps(vhost)
    clusters = {c["name"] for c in data["clusters"]}
    assert set(names.get("clusters", [])) <= clusters


def haproxy_has(bundle: Any, names: dict[str, Any]) -> None:
    assert f"\nfrontend {names['frontend']}\n" in bundle.cfg
    for part in ("host_map", "decision_point"):
        entry = names.get(part, {})
        if "map" in entry:
            assert entry["key"] in dict(bundle.map_entries[entry["map"]])
    if "route" in names:
        values = [v for entries in bundle.map_entries.values() for _, v in entries]
        assert any(names["route"] in v.split("|") for v in values) or names["route"] in bundle.cfg
    for backend in names.get("backends", []):
        assert f"\nbackend {backend['backend']}\n" in bundle.cfg
        servers = {f"{backend['backend']}/{s.name}" for s in bundle.servers[backend["backend"]]}
        assert set(backend["servers"]) == servers


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_explained_names_are_in_what_the_compilers_emit(path: Path) -> None:
    config, group, requests = played(path)
    kinds: list[ProxyKind] = [k for k in PROXY_KINDS if not target_issues(config, k)]
    compiled = {
        "envoy": translate(config, group) if "envoy" in kinds else None,
        "haproxy": render(config, group) if "haproxy" in kinds else None,
    }
    for request in requests:
        decision = explain(config, request, kinds)
        if "envoy" in kinds:
            envoy_has(compiled["envoy"], decision.names["envoy"])
        if "haproxy" in kinds:
            haproxy_has(compiled["haproxy"], decision.names["haproxy"])
