"""Which route takes a request: the order in which both proxies must try a host's routes.

Following the Gateway API: an exact path beats a regex, a regex beats a prefix, and a
longer prefix beats a shorter one; between equal paths a route with a method beats one
without, then more header (and cookie) conditions win, then more query conditions; what
remains is decided by declaration order. A request goes to the first route in this order
whose every condition holds.
"""

from __future__ import annotations

from collections.abc import Sequence

from .route import Route

_PATH_KIND_RANK = {"exact": 0, "regex": 1, "prefix": 2}


def _key(index: int, route: Route) -> tuple[int, int, int, int, int, int]:
    match = route.match
    path = match.path
    kind = "exact" if path.exact is not None else "regex" if path.regex is not None else "prefix"
    prefix_length = len(path.normalized_prefix or "")
    return (
        _PATH_KIND_RANK[kind],
        -prefix_length,
        0 if match.method else 1,
        -(len(match.headers) + len(match.cookies)),
        -len(match.query),
        index,
    )


def ordered_routes(routes: Sequence[Route]) -> list[Route]:
    """The routes in the order a request tries them."""
    return [route for _, route in sorted(enumerate(routes), key=lambda pair: _key(*pair))]


def precedence_order(routes: Sequence[Route]) -> list[int]:
    """Indices into `routes`, in the order a request tries them."""
    return sorted(range(len(routes)), key=lambda i: _key(i, routes[i]))


_RULES = (
    "an exact path comes before a regex path, and a regex before a prefix",
    "a longer prefix comes first",
    "a route with a method comes first",
    "more header and cookie conditions come first",
    "more query conditions come first",
    "the route declared first comes first",
)


def decided_by(routes: Sequence[Route], first: int, second: int) -> str:
    """The precedence rule that puts `routes[first]` before `routes[second]`."""
    ahead, behind = _key(first, routes[first]), _key(second, routes[second])
    rule = next(i for i, (a, b) in enumerate(zip(ahead, behind, strict=True)) if a != b)
    return _RULES[rule]
