"""Header mutations of routes and of their backends (`request_headers`, `response_headers`):
remove, then set, then add, each from a map keyed by route id and header name (`site/api|x-env`),
or by route id, backend and header name for a backend's (`site/api|api-v2|x-env`), so a listener
has one rule per header name and operation however many routes change it.

A request gets its route's mutations once the route is decided, then its backend's once the
backend is chosen (phase `forward`). An answer gets its backend's (`http-response`, answers
from a backend only), then its route's on every answer (`http-after-response`: also the
proxy's own, as on Envoy), but for the answer to a CORS preflight (`txn.preflight`, see
`features.cors`), which Envoy's CORS filter sends without the route's headers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from ...model import HeaderMutation
from ..render_text import Raw
from ..scopes import ListenerScope
from ..variants import route_backends
from .base import Feature

Side = Literal["request", "response"]
_OPERATIONS = (("del", "del-header"), ("set", "set-header"), ("add", "add-header"))


@dataclass(frozen=True)
class HeaderRule:
    """One rule: `verb` the header `name` where the map lookup `fetch` finds the route."""

    verb: str
    name: str
    fetch: str


@dataclass
class HeaderRules:
    """The rules of one side, of routes or of their backends, in the order remove, set, add,
    then by header name."""

    side: Side
    owner: Literal["routes", "backends"]
    keyword: str
    rules: list[HeaderRule] = field(default_factory=list)
    unless: Raw | None = None
    """A condition under which none of the rules apply."""


PREFLIGHT = Raw("{ var(txn.preflight) -m found }")
"""Set by `features.cors` on a CORS preflight it answers."""

Keyed = Iterable[tuple[str, HeaderMutation]]
"""Mutations by the key their map entries start with: a route id, or `route|backend`."""


class Headers(Feature):
    name = "headers"

    def request(self, scope: ListenerScope) -> HeaderRules | None:
        keyed = ((e.id, e.route.request_headers) for e in scope.forwarding)
        return _rules(scope, keyed, "request", "routes")

    def forward(self, scope: ListenerScope) -> HeaderRules | None:
        return _rules(scope, _per_backend(scope, "request"), "request", "backends")

    def response(self, scope: ListenerScope) -> list[HeaderRules] | None:
        backends = _rules(scope, _per_backend(scope, "response"), "response", "backends")
        keyed = ((e.id, e.route.response_headers) for e in scope.routes)
        routes = _rules(scope, keyed, "response", "routes")
        if routes is not None and any(e.route.cors for e in scope.routes):
            routes.unless = PREFLIGHT
        found = [rules for rules in (backends, routes) if rules is not None]
        return found or None


def _per_backend(scope: ListenerScope, side: Side) -> Keyed:
    for entry in scope.forwarding:
        for backend, name in zip(
            entry.route.backends or (), route_backends(entry.route), strict=True
        ):
            mutation = backend.request_headers if side == "request" else backend.response_headers
            yield f"{entry.id}|{name}", mutation


def _rules(
    scope: ListenerScope, keyed: Keyed, side: Side, owner: Literal["routes", "backends"]
) -> HeaderRules | None:
    by_op: dict[str, dict[str, list[tuple[str, str]]]] = {op: {} for op, _ in _OPERATIONS}
    for key, mutation in keyed:
        for name in mutation.remove:
            by_op["del"].setdefault(name, []).append((key, "1"))
        for name, value in mutation.set.items():
            by_op["set"].setdefault(name, []).append((key, value))
        for name, value in mutation.add.items():
            by_op["add"].setdefault(name, []).append((key, value))
    if not any(by_op.values()):
        return None
    short = "req" if side == "request" else "resp"
    if owner == "backends":
        keyword = "http-request" if side == "request" else "http-response"
        lookup = "var(txn.route),concat(|,txn.be,|{name})"
        short = f"backend-{short}"
    else:
        keyword = "http-request" if side == "request" else "http-after-response"
        lookup = "var(txn.route),concat(|{name})"
    result = HeaderRules(side, owner, keyword)
    for op, verb in _OPERATIONS:
        purpose = f"{short}-{op}"
        for name, items in sorted(by_op[op].items()):
            for key, value in items:
                scope.maps.add(purpose, f"{key}|{name}", value)
            fetch = lookup.format(name=name) + f",map_str({scope.maps.name(purpose)})"
            result.rules.append(HeaderRule(verb, name, fetch))
    return result
