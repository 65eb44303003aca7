"""Request rate limits (`rate_limit` of routes and virtual hosts): a token bucket per route
and key, kept in a stick table as the generic cell rate algorithm (GCRA) does.

A bucket of `size` tokens refilled one every `T` is one number: the time `tat` at which it
would be full again. A request arriving at `now` finds `d = max(0, tat - now)`; it is refused
(429) when `d > (size - 1) x T` (no token left) and then changes nothing, else admitted with
`tat = now + d + T`. So only admitted requests take tokens, and HAProxy enforces the same
token bucket Envoy does, to the millisecond. `tat` is kept in the key's `gpt` (32 bits) modulo
2^32 ms, read back as the signed distance from `now` (a table entry expires once its bucket is
full again, long before the distance could wrap); rates above 1,000 per second per key count
in microseconds instead.

A limited route's map entry (`<listener>.ratelimit.map`, by route id) is
`class|T|tolerance|size|retry`: its key class (the routes counted alike: the same key, the
same clock, the same table; one `track-sc2` rule each), its interval and tolerance in the
class's unit, its bucket's size and the seconds a token takes to come back. Keys are hashed
(`sha1`), so a long header value never shares a bucket with another by truncation.

Every answer of a limited route carries `x-ratelimit-limit` (the size),
`x-ratelimit-remaining` (the tokens left) and `x-ratelimit-reset` (0 while tokens remain,
else the seconds a token takes to come back); a refusal carries `retry-after` too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from ...model import KEYS_KEPT, RateLimit, format_duration
from ..scopes import ListenerScope
from .base import Feature

COUNTER = 2
"""The stick counter (`sc2`) rate limits track."""


KeyKind = Literal["none", "client_ip", "header"]


Unit = Literal["ms", "us"]
MS_RATE = 1_000
"""Above this many requests per second per key, buckets count in microseconds."""


@dataclass(frozen=True)
class KeyClass:
    """Routes counted alike: by the same key, on the same clock, in the same table."""

    number: int
    kind: KeyKind
    header: str
    deny_missing: bool
    table: str
    unit: Unit

    @property
    def label(self) -> str:
        if self.kind == "header":
            missing = " (403 without it)" if self.deny_missing else ""
            return f"route and header {self.header}{missing}"
        return "route and client address" if self.kind == "client_ip" else "route"


@dataclass(frozen=True)
class Table:
    """A stick table holding the buckets whose state expires alike (once they are full)."""

    name: str
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
    classes: dict[tuple[KeyKind, str, bool, Unit, str], KeyClass] = {}
    size_per_table: dict[str, tuple[int, int]] = {}
    fill = purpose not in scope.maps  # the first phase to ask writes the map
    for route_id, limit in found:
        bucket = limit.per_proxy(scope.facts.members)
        unit: Unit = "us" if bucket.requests * 1000 > MS_RATE * bucket.per_ms else "ms"
        scale = 1000 if unit == "us" else 1
        interval = max(1, round(bucket.per_ms * scale / bucket.requests))
        tolerance = (bucket.capacity - 1) * interval
        expire = math.ceil(bucket.refill_ms / 1000) * 1000 + 1000
        table = _table(scope, expire)
        kind, header, deny = _class_of(limit)
        key = (kind, header, deny, unit, table)
        if key not in classes:
            classes[key] = KeyClass(len(classes) + 1, kind, header, deny, table, unit)
        held = size_per_table.get(table, (expire, 0))
        size_per_table[table] = (expire, held[1] + KEYS_KEPT)
        if fill:
            scope.maps.add(
                purpose,
                route_id,
                f"{classes[key].number}|{interval}|{tolerance}|{bucket.capacity}|"
                f"{bucket.retry_after}",
            )
    result.classes = list(classes.values())
    result.tables = [
        Table(name, format_duration(expire), size)
        for name, (expire, size) in sorted(size_per_table.items(), key=lambda t: t[1][0])
    ]
    return result


def _table(scope: ListenerScope, expire_ms: int) -> str:
    """`rl:<listener>:<expire>`: no cluster's backend has a name of this form (cluster names
    hold no ':', and other backends are `<cluster>:t..` or `<cluster>:r..`)."""
    return f"rl:{scope.listener.name}:{format_duration(expire_ms)}"
