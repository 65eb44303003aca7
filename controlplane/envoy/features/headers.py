"""Header mutations: remove, then set (replace or create), then add (append).

Request mutations apply to forwarded requests (a request's Host is set by the route's host
rewrite: Envoy refuses to mutate Host as a header); response mutations to every answer,
redirects and direct responses included, so they live on the route, not the cluster.
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc

from ...model import HeaderMutation, Route
from .base import Feature, RouteScope

_SET = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_ADD = base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD


def _option(name: str, value: str, action: int) -> base_pb2.HeaderValueOption:
    # Envoy drops headers whose value is empty unless told to keep them.
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=name, value=value),
        append_action=action,
        keep_empty_value=value == "",
    )


def set_header(name: str, value: str) -> base_pb2.HeaderValueOption:
    """Replace header `name` with `value`, creating it when absent."""
    return _option(name, value, _SET)


HOST = "host"
"""Envoy refuses to mutate Host as a header; a request's Host is set by a host rewrite."""


def header_options(
    mutation: HeaderMutation, *, request: bool
) -> Iterable[base_pb2.HeaderValueOption]:
    """The sets, then the adds, of `mutation` (Envoy applies removals before both and
    overwrites before appends); a request's Host is set by the route's host rewrite instead."""
    for name, value in mutation.set.items():
        if not (request and name == HOST):
            yield set_header(name, value)
    for name, value in mutation.add.items():
        yield _option(name, value, _ADD)


class HeaderMutations(Feature):
    """`request_headers` and `response_headers` of a route."""

    name = "headers"

    def route(self, route: Route, result: rc.Route, scope: RouteScope) -> None:
        if route.backends is not None:
            result.request_headers_to_remove.extend(route.request_headers.remove)
            result.request_headers_to_add.extend(
                header_options(route.request_headers, request=True)
            )
            host = route.request_headers.set.get(HOST)
            if host is not None:
                result.route.host_rewrite_literal = host
        result.response_headers_to_remove.extend(route.response_headers.remove)
        result.response_headers_to_add.extend(header_options(route.response_headers, request=False))


FEATURE = HeaderMutations()
