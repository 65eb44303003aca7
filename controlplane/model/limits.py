"""Traffic limits: request rate limits of routes, and what a compile knows of a node group.

A rate limit is a token bucket per key holding `burst` tokens, refilled at `requests` per
`per`; each admitted request takes a token, a request finding none is refused with 429 and
takes nothing. Each proxy keeps its own buckets (`scope: proxy`, the default): a group of N
proxies behind an even L4 tier admits N times the limit. With `scope: group` the control plane
divides the limit by the number of the group's connected proxies (`GroupFacts.members`) and
compiles again when that number changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, Field

from .types import Duration, HeaderName, Model, format_duration

if TYPE_CHECKING:
    from .config import Config

MAX_REQUESTS = 1_000_000
KEYS_KEPT = 100_000
"""How many keys' buckets each proxy keeps per route; past that the least recently used key's
bucket is dropped, and that key starts again with a full bucket."""
MIN_PER_MS = 1_000
"""Rates are counted per second at the finest; HAProxy's windows and Envoy's fill intervals
are exact in milliseconds from there."""


def _at_least_a_second(ms: int) -> int:
    if ms < MIN_PER_MS:
        raise ValueError(f"per is at least 1s, not {format_duration(ms)}")
    return ms


Period = Annotated[Duration, AfterValidator(_at_least_a_second)]


class HeaderKey(Model):
    """Count requests per value of a request header (e.g. a user or API key id).

    Requests without the header share one bucket (`missing: share`), or are refused with 403
    (`missing: deny`): the limit cannot tell who they are.
    """

    header: HeaderName
    missing: Literal["share", "deny"] = "share"


KeyKind = Literal["none", "client_ip"]


class RateLimit(Model):
    """At most `requests` per `per` on a route, with bursts of up to `burst` (default:
    `requests`), counted per `key`: `none` (the route as a whole), `client_ip` (the client's
    address: the connection's, or the PROXY protocol's source when the listener accepts it),
    or `{header: name}`.

    A token bucket per key: it holds `burst` tokens and gains `requests` every `per`; an admitted
    request takes one; a request that finds none gets 429 with `Retry-After`,
    `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`, and takes nothing.
    `scope: proxy` (default): each proxy enforces the limit on its own, so N proxies admit N
    times it; `scope: group`: the limit is divided among the group's connected proxies.
    """

    requests: int = Field(ge=1, le=MAX_REQUESTS)
    per: Period = Field(description="A duration from 1s to 24h.")
    burst: int | None = Field(
        None, ge=1, le=MAX_REQUESTS, description="The bucket's size (default: requests)."
    )
    key: KeyKind | HeaderKey = "none"
    scope: Literal["proxy", "group"] = "proxy"

    @property
    def capacity(self) -> int:
        """The bucket's size: `burst`, or `requests`."""
        return self.burst if self.burst is not None else self.requests

    @property
    def header(self) -> HeaderKey | None:
        """The header key, when requests are counted per header value."""
        return self.key if isinstance(self.key, HeaderKey) else None

    def per_proxy(self, members: int = 1) -> TokenBucket:
        """What each proxy enforces when `members` proxies share the limit (`scope: group`;
        with `scope: proxy` each enforces the whole of it)."""
        share = members if self.scope == "group" else 1
        return TokenBucket(
            capacity=max(1, math.ceil(self.capacity / share)),
            requests=self.requests,
            per_ms=self.per * share,
        )


@dataclass(frozen=True)
class TokenBucket:
    """One proxy's bucket: `capacity` tokens, refilled at `requests` every `per_ms` ms."""

    capacity: int
    requests: int
    per_ms: int

    @property
    def refill_ms(self) -> float:
        """How long an empty bucket takes to fill: capacity x per / requests (ms)."""
        return self.capacity * self.per_ms / self.requests

    @property
    def retry_after(self) -> int:
        """Whole seconds (at least 1) in which an empty bucket gains a token: `Retry-After`."""
        return max(1, math.ceil(self.per_ms / self.requests / 1000))


@dataclass(frozen=True)
class GroupFacts:
    """What a compile knows of a node group besides the config: how many proxies it has
    (connected, of every kind; at least 1). Only `scope: group` limits read it; the fleet
    derives it from the ledger and compiles again when it changes."""

    members: int = 1

    def __post_init__(self) -> None:
        if self.members < 1:
            raise ValueError("a group has at least one member")


def counts_members(config: Config, group: str) -> bool:
    """Whether the compile of `group` reads `GroupFacts.members`: some route of its listeners
    runs a `scope: group` limit."""
    for listener in config.for_group(group).listeners:
        for vhost in listener.virtual_hosts:
            for route in vhost.routes:
                limit = vhost.rate_limit_of(route)
                if limit is not None and limit.scope == "group":
                    return True
    return False
