"""A scenario's config made concrete: real backend and listener addresses, certificates read."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from controlplane.model import Config, parse_config, resolve_certificate_files

from .format import Scenario

REPO_ROOT = Path(__file__).resolve().parents[2]
BACKEND_REFERENCE = re.compile(r"\$\{([^}]*)\}")


def listener_names(scenario: Scenario) -> list[str]:
    """The names of the listeners the scenario's config declares (as written)."""
    listeners = scenario.config.get("listeners")
    if not isinstance(listeners, list):
        return []
    return [x["name"] for x in listeners if isinstance(x, dict) and isinstance(x.get("name"), str)]


def endpoint_references(scenario: Scenario) -> Iterator[tuple[str, str]]:
    """(field path, backend name) for every `${backend}` an endpoint address or a crs
    `service` names."""
    for path, address in [*_endpoint_addresses(scenario.config), *_crs_services(scenario.config)]:
        for match in BACKEND_REFERENCE.finditer(address):
            yield path, match.group(1)


def concrete_data(
    scenario: Scenario,
    backend_addresses: Mapping[str, str],
    listener_addresses: Mapping[str, str],
) -> dict[str, Any]:
    """The config as plain data with `${backend}` replaced by `backend_addresses`, listener
    addresses replaced by `listener_addresses` (by listener name) and relative certificate
    paths made absolute from the repository root."""
    data = copy.deepcopy(scenario.config)
    for cluster in _dicts(data.get("clusters")):
        for endpoint in _dicts(cluster.get("endpoints")):
            address = endpoint.get("address")
            if isinstance(address, str):
                endpoint["address"] = BACKEND_REFERENCE.sub(
                    lambda m: backend_addresses[m.group(1)], address
                )
    for crs in _crs_dicts(data):
        if isinstance(crs.get("service"), str):
            crs["service"] = BACKEND_REFERENCE.sub(
                lambda m: backend_addresses[m.group(1)], crs["service"]
            )
    for listener in _dicts(data.get("listeners")):
        name = listener.get("name")
        if isinstance(name, str) and name in listener_addresses:
            listener["address"] = listener_addresses[name]
    resolve_certificate_files(data, REPO_ROOT)
    return data


def concrete_config(
    scenario: Scenario,
    backend_addresses: Mapping[str, str],
    listener_addresses: Mapping[str, str],
) -> Config:
    """The validated config of `concrete_data` (ConfigError when the model refuses it)."""
    return parse_config(concrete_data(scenario, backend_addresses, listener_addresses))


def _dicts(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, list):
        yield from (item for item in value if isinstance(item, dict))


def _firewalls(config: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for li, listener in enumerate(config.get("listeners") or ()):
        if not isinstance(listener, dict):
            continue
        if isinstance(listener.get("firewall"), dict):
            yield f"config.listeners[{li}].firewall", listener["firewall"]
        for vi, vhost in enumerate(_dicts(listener.get("virtual_hosts"))):
            for ri, route in enumerate(_dicts(vhost.get("routes"))):
                if isinstance(route.get("firewall"), dict):
                    where = f"config.listeners[{li}].virtual_hosts[{vi}].routes[{ri}].firewall"
                    yield where, route["firewall"]


def _crs_dicts(config: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for _, firewall in _firewalls(config):
        if isinstance(firewall.get("crs"), dict):
            yield firewall["crs"]


def _crs_services(config: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for where, firewall in _firewalls(config):
        crs = firewall.get("crs")
        if isinstance(crs, dict) and isinstance(crs.get("service"), str):
            yield f"{where}.crs.service", crs["service"]


def _endpoint_addresses(config: dict[str, Any]) -> Iterator[tuple[str, str]]:
    clusters = config.get("clusters")
    for ci, cluster in enumerate(clusters if isinstance(clusters, list) else ()):
        endpoints = cluster.get("endpoints") if isinstance(cluster, dict) else None
        for ei, endpoint in enumerate(endpoints if isinstance(endpoints, list) else ()):
            address = endpoint.get("address") if isinstance(endpoint, dict) else None
            if isinstance(address, str):
                yield f"config.clusters[{ci}].endpoints[{ei}].address", address
