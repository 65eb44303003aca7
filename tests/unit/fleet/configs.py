"""Small configs for the fleet's unit tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from controlplane.model import Config, parse_config

CLUSTERS = ("api", "v2", "web")


def config(
    api: Sequence[str] = ("api",),
    groups: Mapping[str, Sequence[int]] | None = None,
    host: str = "127.0.0.1",
) -> Config:
    """One listener `web<i>` on port 10000 + i per entry of `api`, routing `/api` to cluster
    `api[i]` and the rest to `web`. Every cluster stays in use (a route spreads over all of
    them), so moving `/api` to another cluster is a runtime update for HAProxy. `groups` puts
    listeners (by index) in node groups; none: the one `default` group."""
    data: dict[str, Any] = {
        "listeners": [
            {
                "name": f"web{i}",
                "address": f"{host}:{10000 + i}",
                "protocol": "http",
                "virtual_hosts": [{"name": "site", "domains": ["*"], "routes": _routes(cluster)}],
            }
            for i, cluster in enumerate(api)
        ],
        "clusters": [
            {"name": name, "endpoints": [{"address": f"127.0.0.1:{18081 + i}"}]}
            for i, name in enumerate(CLUSTERS)
        ],
    }
    if groups:
        data["node_groups"] = [
            {"name": name, "listeners": [f"web{i}" for i in members]}
            for name, members in groups.items()
        ]
    return parse_config(data)


def _routes(api: str) -> list[dict[str, Any]]:
    return [
        {"name": "api", "match": {"path": {"prefix": "/api"}}, "backends": [{"cluster": api}]},
        {
            "name": "spread",
            "match": {"path": {"prefix": "/spread"}},
            "backends": [{"cluster": c} for c in CLUSTERS],
        },
        {"name": "default", "backends": [{"cluster": "web"}]},
    ]
