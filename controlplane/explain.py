"""A request explained: the model's decision (`model.decision`), with the names each compiler
gives its parts (`envoy.names`, `haproxy.names`), as JSON or as text for an operator.

Used by `controlplane explain`, `POST /v1/explain` and the scenario runner, which checks
every request it sends through a real proxy against it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from .envoy.names import names as envoy_names
from .haproxy.names import names as haproxy_names
from .model import PROXY_KINDS, Config, ProxyKind
from .model.decision import Decision, Request, decide

Namer = Callable[[Config, Decision], dict[str, Any]]

NAMERS: dict[ProxyKind, Namer] = {"envoy": envoy_names, "haproxy": haproxy_names}
"""Each proxy kind's own account of what it calls a decision's parts."""


def explain(config: Config, request: Request, kinds: Sequence[ProxyKind] = PROXY_KINDS) -> Decision:
    """The decision for `request`, with the names of `kinds` (UnknownListener when the config
    has no such listener)."""
    decision = decide(config, request)
    return replace(decision, names={kind: NAMERS[kind](config, decision) for kind in kinds})


def _percent(share: float) -> str:
    return f"{share * 100:.4g}%"


def as_text(decision: dict[str, Any]) -> list[str]:
    """A decision (`Decision.as_json()`, or `POST /v1/explain`'s answer) as lines for an
    operator, one step a line, in the order proxies take them."""
    listener = decision["listener"]
    lines = [
        f"listener   {listener['name']} ({listener['protocol']}, {listener['layer']}; groups "
        f"{', '.join(listener['groups'])}; client address from {listener['client_address']})"
    ]
    tls = decision.get("tls")
    if tls is not None:
        what = {
            "certificate": f"certificates[{tls['index']}]",
            "sni_route": f"sni_routes[{tls['index']}]",
            "default_cluster": "default_cluster",
            "closed": "none",
        }[tls["kind"]]
        matched = f" by {tls['server_name']}" if tls["server_name"] else ""
        lines.append(f"tls        {what}{matched}: {tls['why']}")
    host = decision.get("virtual_host")
    if host is not None:
        lines.append(f"host       {host['name']} (domain {host['domain']}: {host['why']})")
    route = decision.get("route")
    if route is not None:
        lines.append(
            f"route      {route['key']} ({route['where']}; {route['path']}; precedence "
            f"#{route['precedence'] + 1})"
        )
        for other in route["candidates"]:
            lines.append(f"  not      {other['route']}: {other['why']}")
    action = decision["action"]
    kind = action["kind"]
    if kind == "forward":
        for backend in action["backends"]:
            endpoints = ", ".join(
                f"{e['address']} {_percent(e['share'])}" for e in backend["endpoints"]
            )
            affinity = f"; affinity on {backend['affinity']}" if backend["affinity"] else ""
            lines.append(
                f"backend    {backend['cluster']} {_percent(backend['share'])} "
                f"({backend['lb_policy']}: {endpoints}{affinity})"
            )
        if action["path"] is not None:
            lines.append(f"path       rewritten to {action['path']}")
    elif kind == "redirect":
        lines.append(f"answer     {action['status']} Location: {action['location']}")
    elif kind == "direct_response":
        lines.append(f"answer     {action['status']} {action['content_type']}: {action['body']!r}")
    else:
        status = f"{action['status']} " if action["status"] else ""
        lines.append(f"answer     {status}{kind.replace('_', ' ')}: {action['reason']}")
    for policy in decision["policies"]:
        lines.append(f"policy     {policy['kind']}: {policy['summary']}")
    for proxy, names in decision["names"].items():
        parts = "; ".join(f"{key} {_name_text(value)}" for key, value in names.items())
        lines.append(f"{proxy:<10} {parts}")
    return lines


def _name_text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_name_text(v) for v in value)
    if isinstance(value, dict):
        if "backend" in value:
            return f"{value['backend']} ({', '.join(value['servers'])})"
        if "map" in value:
            return f"{value['map']}[{value['key']}]"
        return str(value.get("rule"))
    return str(value)
