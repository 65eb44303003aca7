"""Request mirroring (`mirrors` of a route): a copy of each request, or of the given share of
them, goes to another cluster; Envoy drops its answer. The copy keeps the request's Host
(Envoy would append `-shadow` to it)."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.type.v3 import percent_pb2

from ...model import Mirror, Route
from .base import Feature, RouteScope

_MILLION = 1_000_000


def mirror_policy(mirror: Mirror) -> rc.RouteAction.RequestMirrorPolicy:
    """Copies of `mirror.percent` % of the requests (in millionths) to its cluster."""
    return rc.RouteAction.RequestMirrorPolicy(
        cluster=mirror.cluster,
        runtime_fraction=base_pb2.RuntimeFractionalPercent(
            default_value=percent_pb2.FractionalPercent(
                numerator=round(mirror.percent * _MILLION / 100),
                denominator=percent_pb2.FractionalPercent.MILLION,
            )
        ),
        disable_shadow_host_suffix_append=True,
    )


class Mirrors(Feature):
    """The `mirrors` of forwarding routes."""

    name = "mirrors"

    def route(self, route: Route, result: rc.Route, scope: RouteScope) -> None:
        if result.HasField("route"):
            result.route.request_mirror_policies.extend(mirror_policy(m) for m in route.mirrors)


FEATURE = Mirrors()
