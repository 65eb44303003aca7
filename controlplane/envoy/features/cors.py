"""CORS (`cors` of a route): Envoy's CORS filter on the listener, its policy on each route.

The filter answers a preflight from an allowed origin itself (200, no body) and adds the
`access-control-*` headers to other answers to allowed origins; a preflight from another
origin goes on to the route as any request does (`forward_not_matching_preflights`).
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from google.protobuf import wrappers_pb2

from ...model import Cors, Listener, Route
from ..common import packed
from .base import Feature, RouteScope

CORS = "envoy.filters.http.cors"


def cors_policy(cors: Cors) -> cors_pb2.CorsPolicy:
    """The per-route policy: origins exact or by a full-match regex, the lists joined by `, `."""
    policy = cors_pb2.CorsPolicy(
        allow_methods=", ".join(cors.allow_methods),
        allow_headers=", ".join(cors.allow_headers),
        expose_headers=", ".join(cors.expose_headers),
        forward_not_matching_preflights=wrappers_pb2.BoolValue(value=True),
    )
    for origin in cors.allow_origins:
        if origin.exact is not None:
            policy.allow_origin_string_match.append(string_pb2.StringMatcher(exact=origin.exact))
        else:
            assert origin.regex is not None
            policy.allow_origin_string_match.append(
                string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=origin.regex))
            )
    if cors.max_age is not None:
        policy.max_age = str(cors.max_age // 1000)
    if cors.allow_credentials:
        policy.allow_credentials.value = True
    return policy


class CorsFeature(Feature):
    """The `cors` of routes."""

    name = "cors"

    def http_filters(self, listener: Listener) -> Iterable[hcm.HttpFilter]:
        if any(r.cors for vhost in listener.virtual_hosts for r in vhost.routes):
            yield hcm.HttpFilter(name=CORS, typed_config=packed(cors_pb2.Cors()))

    def route(self, route: Route, result: rc.Route, scope: RouteScope) -> None:
        if route.cors is not None:
            result.typed_per_filter_config[CORS].CopyFrom(packed(cors_policy(route.cors)))


FEATURE = CorsFeature()
