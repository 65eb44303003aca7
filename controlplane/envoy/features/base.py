"""What a feature of the Envoy compiler is: the points where it adds to what is built."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)

from ...model import GroupFacts, Listener, Route, VirtualHost


@dataclass(frozen=True)
class RouteScope:
    """Where a route is compiled: its listener's own settings (the listener without its
    virtual hosts: a route's translation is remembered per virtual host, so it may not read the
    others), its virtual host, and what the compile knows of the node group (`GroupFacts`)."""

    listener: Listener
    vhost: VirtualHost
    facts: GroupFacts


class Feature:
    """One feature of the Envoy compiler; override the points it needs."""

    name: str = "feature"

    def route(self, route: Route, result: rc.Route, scope: RouteScope) -> None:
        """Add to `result`, the Envoy route compiled from `route` (one of `scope.vhost`)."""

    def http_filters(self, listener: Listener) -> Iterable[hcm.HttpFilter]:
        """HTTP filters `listener`'s connection manager runs before the router."""
        return ()

    def listener(self, listener: Listener, result: listener_pb2.Listener) -> None:
        """Change `result`, the Envoy listener built for `listener` (its filter chains, their
        match), once everything else is built."""

    def network_filters(self, listener: Listener) -> Iterable[lc.Filter]:
        """Network filters each filter chain of `listener` runs before its proxying filter."""
        return ()
