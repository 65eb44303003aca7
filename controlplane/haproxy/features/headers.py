"""Header mutations of routes (`request_headers`, `response_headers`): remove, then set, then
add, each from a map keyed by route id and header name (`site/api|x-env`), so a listener has
one rule per header name and operation however many routes change it.

Request headers are changed for forwarding routes once their route is decided, response
headers on every answer (`http-after-response`: also the proxy's own, as on Envoy).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from ...model import HeaderMutation
from ..scopes import ListenerScope, RouteEntry
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
    """The rules of one side, in the order remove, set, add, then by header name."""

    side: Side
    keyword: str
    rules: list[HeaderRule] = field(default_factory=list)


class Headers(Feature):
    name = "headers"

    def request(self, scope: ListenerScope) -> HeaderRules | None:
        return _rules(scope, scope.forwarding, "request")

    def response(self, scope: ListenerScope) -> HeaderRules | None:
        return _rules(scope, scope.routes, "response")


def _rules(scope: ListenerScope, entries: Sequence[RouteEntry], side: Side) -> HeaderRules | None:
    by_op: dict[str, dict[str, list[tuple[str, str]]]] = {op: {} for op, _ in _OPERATIONS}
    for entry in entries:
        mutation: HeaderMutation = (
            entry.route.request_headers if side == "request" else entry.route.response_headers
        )
        for name in mutation.remove:
            by_op["del"].setdefault(name, []).append((entry.id, "1"))
        for name, value in mutation.set.items():
            by_op["set"].setdefault(name, []).append((entry.id, value))
        for name, value in mutation.add.items():
            by_op["add"].setdefault(name, []).append((entry.id, value))
    if not any(by_op.values()):
        return None
    keyword = "http-request" if side == "request" else "http-after-response"
    short = "req" if side == "request" else "resp"
    result = HeaderRules(side, keyword)
    for op, verb in _OPERATIONS:
        purpose = f"{short}-{op}"
        for name, items in sorted(by_op[op].items()):
            for route_id, value in items:
                scope.maps.add(purpose, f"{route_id}|{name}", value)
            fetch = f"var(txn.route),concat(|{name}),map_str({scope.maps.name(purpose)})"
            result.rules.append(HeaderRule(verb, name, fetch))
    return result
