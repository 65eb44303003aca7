"""Large virtual hosts as a matcher tree on `:path`, so Envoy finds a route by map lookups
instead of walking a long list (measured here: 10,000 prefix routes in a list 2.4k rps, in a
tree 23.8k rps).

The tree keeps the meaning of the route list exactly:

- Envoy picks the longest key of a `prefix_match_map` that starts `:path`, which includes the
  query string. A prefix route `/api` owns the keys `/api/` (paths below it) and `/api?` (it,
  with a query), and `/api` itself through a nested `exact_match_map`, so `/apix` misses the
  nested map and falls back to shorter keys, as an element prefix must. An exact route `/x`
  owns `/x?` and the nested exact `/x`.
- A leaf is a RouteList of every route that can take a request reaching it: the routes of its
  own key and of each shorter element prefix (down to `/`), in `ordered_routes` order and cut
  after the first route without conditions. A chosen Route's own match is still checked by
  Envoy and a miss there does not fall back, which the ancestors in each leaf make harmless.
- Requests reaching no key take the `/` routes (`on_no_match`).

Hosts with regex routes keep the plain list (a regex outranks every prefix and can match under
any key), as do small hosts and hosts whose leaves would repeat too many routes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.type.matcher.v3 import http_inputs_pb2
from google.protobuf.message import Message
from xds.core.v3 import extension_pb2
from xds.type.matcher.v3 import matcher_pb2

from ..model import Route, VirtualHost, ordered_routes
from .common import packed

TREE_MIN_ROUTES = 100
"""A virtual host with more routes than this is compiled into a matcher tree."""

MAX_LEAF_ENTRIES_PER_ROUTE = 16
"""Keep the plain list when the leaves would hold more than this many routes per route."""

RouteBuilder = Callable[[Route], rc.Route]


def _typed(name: str, message: Message) -> extension_pb2.TypedExtensionConfig:
    return extension_pb2.TypedExtensionConfig(name=name, typed_config=packed(message))


def _path_input() -> extension_pb2.TypedExtensionConfig:
    return _typed("request-path", http_inputs_pb2.HttpRequestHeaderMatchInput(header_name=":path"))


def _is_ancestor_or_same(prefix: str, path: str) -> bool:
    """Whether element prefix `prefix` (normalised) takes every path below `path`."""
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


def _unconditional(route: Route) -> bool:
    match = route.match
    return not (match.method or match.headers or match.query or match.cookies)


def _candidates(ordered: Sequence[Route], path: str, exact_paths: bool) -> list[Route]:
    """The routes that can take a request for `path` (exactly, or anything under it), in
    precedence order, cut after the first one without conditions."""
    chosen = []
    for route in ordered:
        prefix = route.match.path.normalized_prefix
        if prefix is not None:
            fits = _is_ancestor_or_same(prefix, path)
        else:
            fits = exact_paths and route.match.path.exact == path
        if fits:
            chosen.append(route)
            if _unconditional(route):
                break
    return chosen


def tree_for(
    vhost: VirtualHost,
    build: RouteBuilder,
    min_routes: int = TREE_MIN_ROUTES,
) -> matcher_pb2.Matcher | None:
    """A matcher tree for `vhost` when it is large and a tree keeps its meaning, else None.

    `build` turns a model route into its Envoy route (the same as in a plain list).
    """
    routes = vhost.routes
    if len(routes) <= min_routes or any(r.match.path.regex is not None for r in routes):
        return None
    ordered = ordered_routes(routes)
    exact_keys: set[str] = set()
    below_keys: set[str] = set()
    query_keys: set[str] = set()
    for route in ordered:
        path = route.match.path.exact or route.match.path.normalized_prefix or "/"
        if path == "/" and route.match.path.exact is None:
            continue
        exact_keys.add(path)
        query_keys.add(path + "?")
        if route.match.path.exact is None:
            below_keys.add(path + "/")
    leaves: dict[str, tuple[list[Route], list[Route]]] = {}
    for key in sorted(exact_keys | below_keys | query_keys):
        if key in query_keys:
            equal, below = [], _candidates(ordered, key[:-1], exact_paths=True)
        else:
            equal = _candidates(ordered, key, exact_paths=True) if key in exact_keys else []
            below = _candidates(ordered, key[:-1], exact_paths=False) if key in below_keys else []
        leaves[key] = (equal, below)
    size = sum(len(equal) + len(below) for equal, below in leaves.values())
    if size > MAX_LEAF_ENTRIES_PER_ROUTE * len(routes):
        return None
    return _matcher(leaves, _candidates(ordered, "/", exact_paths=False), build)


def _route_list(routes: Sequence[Route], build: RouteBuilder) -> matcher_pb2.Matcher.OnMatch:
    return matcher_pb2.Matcher.OnMatch(
        action=_typed("routes", rc.RouteList(routes=[build(r) for r in routes]))
    )


def _matcher(
    leaves: Mapping[str, tuple[list[Route], list[Route]]],
    root: Sequence[Route],
    build: RouteBuilder,
) -> matcher_pb2.Matcher:
    """Keys with requests equal to them get a nested exact map (a miss there falls back to
    shorter keys, or goes to the key's own routes for paths below it)."""
    tree = matcher_pb2.Matcher.MatcherTree(input=_path_input())
    for key, (equal, below) in leaves.items():
        on_match = tree.prefix_match_map.map[key]
        if equal:
            nested = matcher_pb2.Matcher.MatcherTree(input=_path_input())
            nested.exact_match_map.map[key].CopyFrom(_route_list(equal, build))
            on_match.matcher.matcher_tree.CopyFrom(nested)
            if below:
                on_match.matcher.on_no_match.CopyFrom(_route_list(below, build))
        elif below:
            on_match.CopyFrom(_route_list(below, build))
    result = matcher_pb2.Matcher(matcher_tree=tree)
    if root:
        result.on_no_match.CopyFrom(_route_list(root, build))
    return result
