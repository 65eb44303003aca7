"""Import of Kubernetes Gateway API YAML (`controlplane import gateway-api`): Gateways and
their HTTP, gRPC, TLS and TCP routes as the equivalent config, with a line for each field
that cannot be carried over."""

from __future__ import annotations

from typing import Any

from .convert import Imported, Resource, import_resources, resources_of


def backends_of(data: Any) -> dict[str, list[str]]:
    """The `--backends` mapping: each Service name to its endpoint addresses (`host:port`, one
    or a list); ValueError naming what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("expected a mapping of Service name to endpoint addresses")
    found = {}
    for name, addresses in data.items():
        listed = [addresses] if isinstance(addresses, str) else addresses
        if (
            not isinstance(listed, list)
            or not listed
            or not all(isinstance(a, str) for a in listed)
        ):
            raise ValueError(f"{name}: expected an address (host:port) or a list of them")
        found[str(name)] = listed
    return found


__all__ = ["Imported", "Resource", "backends_of", "import_resources", "resources_of"]
