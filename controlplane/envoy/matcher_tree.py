"""Large virtual hosts as a matcher tree on `:path`, so Envoy finds a route by map lookups
instead of walking a long list (measured here: 10,000 prefix routes in a list 2.4k rps, in a
tree 23.8k rps).

The tree keeps the meaning of the route list exactly:

- Envoy picks the longest key of a `prefix_match_map` that starts `:path` (which includes the
  query string) and runs its RouteList: the first route there whose own match holds wins, and
  when none holds there is no falling back to shorter keys.
- Every exact path and every element prefix but `/` is a key. A request reaching key `k`
  starts with `k` as a string, so the routes that can take it are the routes of `k` itself
  and of the element prefixes above it (`/api/v1` → `/api`, `/`): the leaf lists exactly
  those, in `ordered_routes` order. Each route's own match then decides, so `/apix` reaching
  key `/api` skips the `/api` route and takes an ancestor, as an element prefix must.
- A leaf ends after the first route without conditions whose prefix is a strict ancestor of
  the key (it takes every request reaching the key); requests reaching no key take the `/`
  routes (`on_no_match`).

Hosts with regex routes keep the plain list (a regex outranks every prefix and can match under
any key), as do small hosts and hosts whose leaves would repeat too many routes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.type.matcher.v3 import http_inputs_pb2
from google.protobuf.message import Message
from xds.core.v3 import extension_pb2
from xds.type.matcher.v3 import matcher_pb2, string_pb2

from ..model import Route, VirtualHost, ordered_routes
from .common import packed

TREE_MIN_ROUTES = 100
"""A virtual host with more routes than this is compiled into a matcher tree."""

MAX_LEAF_ENTRIES_PER_ROUTE = 8
"""Keep the plain list when the leaves would hold more than this many routes per route."""

RouteBuilder = Callable[[Route], rc.Route]


def _typed(name: str, message: Message) -> extension_pb2.TypedExtensionConfig:
    return extension_pb2.TypedExtensionConfig(name=name, typed_config=packed(message))


def _path_input() -> extension_pb2.TypedExtensionConfig:
    return _typed("request-path", http_inputs_pb2.HttpRequestHeaderMatchInput(header_name=":path"))


def _unconditional(route: Route) -> bool:
    match = route.match
    return not (match.method or match.headers or match.query or match.cookies)


class _Index:
    """The routes by exact path and by element prefix, with their precedence positions."""

    def __init__(self, ordered: Sequence[Route]) -> None:
        self.position = {id(route): i for i, route in enumerate(ordered)}
        self.by_exact: dict[str, list[Route]] = {}
        self.by_prefix: dict[str, list[Route]] = {}
        for route in ordered:
            path = route.match.path
            if path.exact is not None:
                self.by_exact.setdefault(path.exact, []).append(route)
            elif path.normalized_prefix is not None:
                self.by_prefix.setdefault(path.normalized_prefix, []).append(route)

    def paths(self) -> list[str]:
        """The keys: every exact path and element prefix but `/`, sorted."""
        return sorted({*self.by_exact, *self.by_prefix} - {"/"})

    def leaf(self, key: str) -> list[Route]:
        """The routes that can take a request reaching `key` (or, for `/`, reaching no key), in
        precedence order, ending with the first that surely takes it."""
        above = ["/"] + [key[:i] for i in range(1, len(key)) if key[i] == "/"]
        # prefixes that take every request reaching the key: its strict ancestors, or `/`
        # itself for requests reaching no key
        covering_paths = [p for p in above if p != key] or ["/"]
        found = [r for p in covering_paths for r in self.by_prefix.get(p, ())]
        covering = {id(r) for r in found}
        if key != "/":
            found += self.by_prefix.get(key, [])
        found += self.by_exact.get(key, [])
        found.sort(key=lambda route: self.position[id(route)])
        for i, route in enumerate(found):
            if id(route) in covering and _unconditional(route):
                return found[: i + 1]
        return found


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
    index = _Index(ordered_routes(routes))
    leaves = {key: index.leaf(key) for key in index.paths()}
    if sum(len(leaf) for leaf in leaves.values()) > MAX_LEAF_ENTRIES_PER_ROUTE * len(routes):
        return None
    built: dict[int, rc.Route] = {}

    def once(route: Route) -> rc.Route:
        if id(route) not in built:
            built[id(route)] = build(route)
        return built[id(route)]

    tree = matcher_pb2.Matcher.MatcherTree(input=_path_input())
    for key, leaf in leaves.items():
        tree.prefix_match_map.map[key].CopyFrom(_route_list(leaf, once))
    result = matcher_pb2.Matcher(matcher_tree=tree)
    root = index.leaf("/")
    if root:
        result.on_no_match.CopyFrom(_route_list(root, once))
    return result


def _route_list(routes: Sequence[Route], build: RouteBuilder) -> matcher_pb2.Matcher.OnMatch:
    return matcher_pb2.Matcher.OnMatch(
        action=_typed("routes", rc.RouteList(routes=[build(r) for r in routes]))
    )


def first_when(
    header: str, contains: str, route: rc.Route, tree: matcher_pb2.Matcher
) -> matcher_pb2.Matcher:
    """`tree`, except that a request whose `header` holds `contains` takes `route`."""
    holds = matcher_pb2.Matcher.MatcherList.Predicate(
        single_predicate=matcher_pb2.Matcher.MatcherList.Predicate.SinglePredicate(
            input=_typed(header, http_inputs_pb2.HttpRequestHeaderMatchInput(header_name=header)),
            value_match=string_pb2.StringMatcher(contains=contains),
        )
    )
    entry = matcher_pb2.Matcher.MatcherList.FieldMatcher(
        predicate=holds,
        on_match=matcher_pb2.Matcher.OnMatch(action=_typed("routes", rc.RouteList(routes=[route]))),
    )
    return matcher_pb2.Matcher(
        matcher_list=matcher_pb2.Matcher.MatcherList(matchers=[entry]),
        on_no_match=matcher_pb2.Matcher.OnMatch(matcher=tree),
    )
