"""Request rate limits (`rate_limit` of routes and virtual hosts): stick tables counting the
requests each route and key admitted.

A limited route's map entry (`<listener>.ratelimit.map`, by route id) names its key class,
its bucket's size and the seconds a token takes to come back: `class|size|retry`. A class is
the routes counted alike (the same key, the same window): one `track-sc2` rule each, into a
stick table per window (`backend rl:<listener>:<window>`, `gpc_rate` over it). A route's
bucket of `size` tokens becomes a sliding window of `size` requests over `TokenBucket.
window_ms`; a request is refused (429) when the window holds `size` admitted requests already,
and only admitted requests count (`sc-inc-gpc` after the decision): a client that keeps
sending over the limit still gets the limit, never less. Keys are hashed (`sha1`), so a long
header value never shares a bucket with another by truncation.

Every answer of a limited route carries `x-ratelimit-limit`, `x-ratelimit-remaining` and
`x-ratelimit-reset` (0 while requests remain, else the seconds a token takes to come back: an
upper bound of Envoy's exact figure); a refusal carries `retry-after` too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ...model import KEYS_KEPT, RateLimit, format_duration
from ..scopes import ListenerScope
from .base import Feature

COUNTER = 2
"""The stick counter (`sc2`) rate limits track."""


KeyKind = Literal["none", "client_ip", "header"]


@dataclass(frozen=True)
class KeyClass:
    """Routes counted alike: by the same key, in the same table."""

    number: int
    kind: KeyKind
    header: str
    deny_missing: bool
    table: str
    window: str

    @property
    def label(self) -> str:
        if self.kind == "header":
            missing = " (403 without it)" if self.deny_missing else ""
            return f"route and header {self.header}{missing}"
        return "route and client address" if self.kind == "client_ip" else "route"


@dataclass(frozen=True)
class Table:
    """A stick table counting the admitted requests of one window."""

    name: str
    window: str
    expire: str
    size: int


@dataclass
class Limits:
    """A listener's rate limits: the map, the key classes and their tables."""

    listener: str
    map: str
    counter: int
    classes: list[KeyClass] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)


def _class_of(limit: RateLimit) -> tuple[KeyKind, str, bool]:
    header = limit.header
    if header is not None:
        return "header", header.header, header.missing == "deny"
    return ("client_ip" if limit.key == "client_ip" else "none"), "", False


class RateLimits(Feature):
    name = "rate_limits"

    def request(self, scope: ListenerScope) -> Limits | None:
        return _limits(scope)

    def response(self, scope: ListenerScope) -> Limits | None:
        return _limits(scope)

    def sections(self, scope: ListenerScope) -> Limits | None:
        return _limits(scope)


def _limits(scope: ListenerScope) -> Limits | None:
    """The listener's limits, and (once per render) their map entries."""
    found: list[tuple[str, RateLimit]] = []
    for entry in scope.routes:
        limit = entry.vhost.rate_limit_of(entry.route)
        if limit is not None:
            found.append((entry.id, limit))
    if not found:
        return None
    purpose = "ratelimit"
    result = Limits(scope.listener.name, scope.maps.name(purpose), COUNTER)
    classes: dict[tuple[KeyKind, str, bool, int], KeyClass] = {}
    size_per_window: dict[int, int] = {}
    fill = purpose not in scope.maps  # the first phase to ask writes the map
    for route_id, limit in found:
        bucket = limit.per_proxy(scope.facts.members)
        window = bucket.window_ms
        kind, header, deny = _class_of(limit)
        key = (kind, header, deny, window)
        if key not in classes:
            classes[key] = KeyClass(
                len(classes) + 1, kind, header, deny, _table(scope, window), format_duration(window)
            )
        size_per_window[window] = size_per_window.get(window, 0) + KEYS_KEPT
        if fill:
            scope.maps.add(
                purpose,
                route_id,
                f"{classes[key].number}|{bucket.capacity}|{bucket.retry_after}",
            )
    result.classes = list(classes.values())
    result.tables = [
        Table(_table(scope, window), format_duration(window), format_duration(2 * window), size)
        for window, size in sorted(size_per_window.items())
    ]
    return result


def _table(scope: ListenerScope, window: int) -> str:
    """`rl:<listener>:<window>`: no cluster's backend has a name of this form (cluster names
    hold no ':', and other backends are `<cluster>:t..` or `<cluster>:r..`)."""
    return f"rl:{scope.listener.name}:{format_duration(window)}"
