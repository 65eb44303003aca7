"""Clusters: a named set of endpoints and how a proxy spreads traffic over them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .types import (
    Address,
    CookiePath,
    Duration,
    HeaderName,
    HealthCheckPath,
    Model,
    Name,
    duration_field,
    model_check,
)

UpstreamProtocol = Literal["http1", "http2", "tcp"]
LbPolicy = Literal["round_robin", "least_request", "random", "ring_hash", "maglev"]
HASHING_POLICIES: frozenset[str] = frozenset({"ring_hash", "maglev"})
DEFAULT_LIMIT = 1024
"""The connection and request limits of a cluster unless it sets its own (Envoy's defaults)."""
MAX_LIMIT = 1_000_000


class Endpoint(Model):
    """One server of a cluster. Its share of the cluster's traffic is weight / sum(weights)."""

    address: Address
    weight: int = Field(1, ge=1, le=256)


class HashCookie(Model):
    """A cookie the proxy sets on the first answer to a client, naming the endpoint that
    answered; later requests carrying it go to that endpoint while it is healthy. It is not
    hashed: a client without it is balanced by the cluster's `lb_policy` (round robin for
    `ring_hash` and `maglev`, which have no key for it)."""

    name: HeaderName
    ttl: Duration = duration_field(3_600_000, "How long a client keeps the cookie.")
    path: CookiePath = "/"


class HashOn(Model):
    """What keeps a client on one endpoint (session affinity); exactly one is set.

    `source_ip` and `header` are keys a hashing cluster (`ring_hash`, `maglev`) maps to an
    endpoint: requests with the same key reach the same endpoint while the set of healthy
    endpoints stays the same. `cookie` works with every `lb_policy`: see `HashCookie`.
    """

    source_ip: bool = False
    header: HeaderName | None = None
    cookie: HashCookie | None = None

    @model_check
    def _exactly_one(self) -> HashOn:
        chosen = [k for k in ("source_ip", "header", "cookie") if getattr(self, k)]
        if len(chosen) != 1:
            raise ValueError("set exactly one of source_ip, header, cookie")
        return self

    @property
    def hashes(self) -> bool:
        """Whether the key is hashed (a header or the source address), not a cookie."""
        return self.cookie is None

    @property
    def needs_l7(self) -> bool:
        """Whether the key lives in HTTP (a header or a cookie) rather than in the connection."""
        return not self.source_ip


class HealthCheck(Model):
    """Active health checking: an endpoint receives traffic only while it passes.

    `http` checks send GET `path` and pass on one of `expected_statuses`; `tcp` checks pass
    when a connection opens. An endpoint turns unhealthy after `unhealthy_threshold`
    consecutive failures and healthy again after `healthy_threshold` consecutive passes.
    """

    kind: Literal["http", "tcp"] = "http"
    path: HealthCheckPath = "/"
    expected_statuses: list[int] = Field(default_factory=lambda: [200], min_length=1)
    interval: Duration = duration_field(5_000)
    timeout: Duration = duration_field(2_000)
    healthy_threshold: int = Field(2, ge=1, le=100)
    unhealthy_threshold: int = Field(3, ge=1, le=100)

    @model_check
    def _statuses(self) -> HealthCheck:
        for status in self.expected_statuses:
            if not 100 <= status <= 599:
                raise ValueError(f"expected_statuses: {status} is not an HTTP status")
        if self.timeout > self.interval:
            raise ValueError("timeout must not exceed interval")
        return self


class Cluster(Model):
    """A named group of endpoints speaking one upstream protocol.

    `protocol`: `http1` and `http2` carry HTTP requests (`http2` balances each request or
    gRPC call separately, even when many share one client connection); `tcp` carries the
    bytes of L4 listeners. `lb_policy` chooses an endpoint per request (L7) or per
    connection (L4): `least_request` takes an endpoint with the fewest active requests (L7)
    or connections (L4), comparing all of them; `ring_hash` and `maglev` need `hash_on`, the
    key that keeps a client on one endpoint.
    """

    name: Name
    endpoints: list[Endpoint] = Field(min_length=1)
    protocol: UpstreamProtocol = "http1"
    lb_policy: LbPolicy = "round_robin"
    hash_on: HashOn | None = None
    health_check: HealthCheck | None = None
    connect_timeout: Duration = duration_field(5_000)
    send_proxy_protocol: bool = Field(
        False, description="Send a PROXY protocol v2 header to endpoints on each connection."
    )
    max_connections: int = Field(
        DEFAULT_LIMIT,
        ge=1,
        le=MAX_LIMIT,
        description="Connections one proxy keeps to the cluster's endpoints at most, idle ones "
        "included; a request finding them all busy waits in the queue.",
    )
    max_pending_requests: int = Field(
        DEFAULT_LIMIT,
        ge=1,
        le=MAX_LIMIT,
        description="Requests one proxy queues for a connection at most; one more gets 503 at "
        "once.",
    )
    max_requests: int = Field(
        DEFAULT_LIMIT,
        ge=1,
        le=MAX_LIMIT,
        description="Requests one proxy has in progress to the cluster at most (what bounds "
        "HTTP/2, where requests share connections); one more gets 503 at once.",
    )
    queue_timeout: Duration | None = Field(
        None,
        description="How long a request waits in the queue before it gets 503 (default: as "
        "long as its route's timeout allows). HAProxy only.",
    )

    @model_check
    def _hashing(self) -> Cluster:
        hashing = self.lb_policy in HASHING_POLICIES
        if hashing and self.hash_on is None:
            raise ValueError(f"lb_policy {self.lb_policy} needs hash_on")
        if not hashing and self.hash_on is not None and self.hash_on.cookie is None:
            raise ValueError("hash_on source_ip or header needs lb_policy ring_hash or maglev")
        return self
