"""What Envoy calls the parts of a decided request, to find them in its `/config_dump`."""

from __future__ import annotations

from typing import Any

from ..model import Config
from ..model.decision import Decision
from .listeners import DEFAULT_CHAIN, certificate_chain, sni_chain
from .routes import route_name


def names(config: Config, decision: Decision) -> dict[str, Any]:
    """The listener, filter chain, route configuration, virtual host, route and clusters of
    `decision` as this compiler names them (`translate`'s resources)."""
    found: dict[str, Any] = {"listener": decision.listener.name}
    tls = decision.tls
    if tls is not None and tls.kind != "closed":
        if tls.kind == "certificate":
            found["filter_chain"] = (
                certificate_chain(tls.index or 0) if tls.server_name else DEFAULT_CHAIN
            )
        else:
            found["filter_chain"] = (
                sni_chain(tls.index or 0) if tls.kind == "sni_route" else DEFAULT_CHAIN
            )
    refused = any(p.kind == "addresses" and p.detail["refused"] for p in decision.policies)
    if decision.listener.layer == "L7" and not refused:
        found["route_configuration"] = decision.listener.name
    if decision.virtual_host is not None:
        found["virtual_host"] = decision.virtual_host.name
    rid = decision.route_id()
    if rid is not None:
        found["route"] = route_name(rid)
    if decision.action.backends:
        found["clusters"] = decision.action.clusters()
    return found
