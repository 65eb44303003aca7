"""Header mutations: remove, then set (replace or create), then add (append).

Request mutations apply to forwarded requests (a request's Host is set by the route's host
rewrite: Envoy refuses to mutate Host as a header); response mutations to every answer,
redirects and direct responses included, so they live on the route, not the cluster.

A route whose backends change headers of their own (`backends[].request_headers`,
`response_headers`) carries every mutation on its weighted clusters instead: each gets the
route's and its backend's mutations composed into one (a request the route's then the
backend's, an answer the backend's then the route's), since Envoy applies a weighted
cluster's before its route's and each level's removals before its additions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

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


Verb = Literal["remove", "set", "add"]


@dataclass
class Composed:
    """Mutations applied one after the other, as Envoy applies one level: `removals` first,
    then `options` in order (each header's set before its additions), `host` the Host set."""

    removals: list[str] = field(default_factory=list)
    options: list[base_pb2.HeaderValueOption] = field(default_factory=list)
    host: str | None = None


def compose(mutations: Sequence[HeaderMutation], *, request: bool) -> Composed:
    """What applying `mutations` in order does, per header: what a later removal or set
    makes of earlier changes is dropped; a request's Host goes to `host`."""
    steps: dict[str, list[tuple[Verb, str]]] = {}
    for mutation in mutations:
        for name in mutation.remove:
            steps.setdefault(name, []).append(("remove", ""))
        for name, value in mutation.set.items():
            steps.setdefault(name, []).append(("set", value))
        for name, value in mutation.add.items():
            steps.setdefault(name, []).append(("add", value))
    result = Composed()
    additions: list[base_pb2.HeaderValueOption] = []
    for name, history in steps.items():
        last = max((i for i, (verb, _) in enumerate(history) if verb != "add"), default=None)
        kept = history if last is None else history[last:]
        for verb, value in kept:
            if verb == "remove":
                result.removals.append(name)
            elif request and name == HOST:
                result.host = value
            elif verb == "set":
                result.options.append(set_header(name, value))
            else:
                additions.append(_option(name, value, _ADD))
    result.options.extend(additions)
    return result


class HeaderMutations(Feature):
    """`request_headers` and `response_headers` of a route and of its backends."""

    name = "headers"

    def route(self, route: Route, result: rc.Route, scope: RouteScope) -> None:
        forwarding = result.HasField("route")  # not when every backend weighs 0
        if forwarding and route.mutates_per_backend:
            self._per_backend(route, result)
            return
        if forwarding:
            result.request_headers_to_remove.extend(route.request_headers.remove)
            result.request_headers_to_add.extend(
                header_options(route.request_headers, request=True)
            )
            host = route.request_headers.set.get(HOST)
            if host is not None:
                result.route.host_rewrite_literal = host
        result.response_headers_to_remove.extend(route.response_headers.remove)
        result.response_headers_to_add.extend(header_options(route.response_headers, request=False))

    def _per_backend(self, route: Route, result: rc.Route) -> None:
        assert route.backends is not None
        weighted = result.route.weighted_clusters.clusters
        for backend, cluster in zip(route.backends, weighted, strict=True):
            request = compose([route.request_headers, backend.request_headers], request=True)
            cluster.request_headers_to_remove.extend(request.removals)
            cluster.request_headers_to_add.extend(request.options)
            if request.host is not None:
                cluster.host_rewrite_literal = request.host
            response = compose([backend.response_headers, route.response_headers], request=False)
            cluster.response_headers_to_remove.extend(response.removals)
            cluster.response_headers_to_add.extend(response.options)


FEATURE = HeaderMutations()
