"""What HAProxy calls the parts of a decided request, to find them in the rendered
configuration and through the runtime API (`show map`, `show servers state`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..model import Config, Route
from ..model.decision import Decision, path_takes
from .render_backends import backend_name, variant_of
from .render_routes import key_host
from .scopes import MapFiles, route_key


def names(config: Config, decision: Decision) -> dict[str, Any]:
    """The frontend, the map entries that decided the request, the route's id (the key of its
    entries in every per-route map) and the backends with their servers, as `render` names
    them."""
    listener = config.listeners[decision.listener.index]
    maps = MapFiles(listener.name)
    found: dict[str, Any] = {"frontend": listener.name}
    host = decision.virtual_host
    if host is not None:
        if host.why == "exact":
            found["host_map"] = {"map": maps.name("hosts"), "key": host.domain}
        elif host.why == "wildcard":
            found["host_map"] = {"map": maps.name("wildcards"), "key": host.domain[1:]}
        else:
            found["host_map"] = {"rule": "the catch-all virtual host", "value": host.name}
    rid = decision.route_id()
    route = None
    if rid is not None and host is not None:
        vhost = listener.virtual_hosts[host.index]
        route = vhost.routes[rid.index]
        found["route"] = route_key(rid)
        key = key_host(listener, vhost.name)
        found["decision_point"] = _decision_point(maps, key, vhost.routes, decision)
    backends = []
    for share in decision.action.backends:
        cluster = config.cluster(share.cluster)
        name = backend_name(cluster.name, variant_of(route)) if route is not None else cluster.name
        servers = [f"{name}/ep{n}" for n in range(1, len(cluster.endpoints) + 1)]
        backends.append({"backend": name, "servers": servers})
    if backends:
        found["backends"] = backends
    return found


def _decision_point(
    maps: MapFiles, vhost: str, routes: Sequence[Route], decision: Decision
) -> dict[str, str]:
    """Where the route tables look the request up (see `render_routes`): its exact path, the
    regex rule of the route, or the longest prefix above its path; `vhost` is what the
    virtual host's keys start with (`key_host`)."""
    path = decision.request.path_only
    if any(r.match.path.exact == path for r in routes):
        return {"map": maps.name("exact"), "key": vhost + path}
    assert decision.route is not None
    chosen = routes[decision.route.index]
    if chosen.match.path.regex is not None:
        return {"rule": f"the regex rule of route {decision.route.key}"}
    prefixes = [
        r.match.path.normalized_prefix or "/"
        for r in routes
        if r.match.path.prefix is not None and path_takes(r.match.path, path)
    ]
    longest = max(prefixes, key=len)
    return {"map": maps.name("prefix"), "key": vhost + ("/" if longest == "/" else longest + "/")}
