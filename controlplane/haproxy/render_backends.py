"""Backends: one per cluster, plus one per other combination of route options that HAProxy
keeps at backend level (timeout, retries).

A cluster's *primary* backend is named after it and carries the route defaults (15s timeout,
no retries) and the health checks. A route with other options gets a backend named
`<cluster>:<options>` (`api:t30s`, `api:r2-conn-gw`) whose servers `track` the primary's, so
each endpoint is health-checked once. Every server is one line,
`server NAME HOST:PORT weight W ...`, so the manager can change addresses and weights at
runtime; endpoints given by host name resolve through the `system` resolvers.

This module builds that structure (`BackendSection`, whose servers are the bundle's runtime
table); `templates/backend.j2` writes it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from ..model import Cluster, Route, format_duration, split_address
from ..model.types import NO_TIMEOUT
from .bundle import Server
from .features import Part
from .render_text import Runtime
from .variants import Variant, backend_name, variant_of

_RETRY_ON = {
    "connect_failure": ("conn-failure",),
    "reset": ("empty-response", "junk-response", "response-timeout"),
    "gateway_error": ("502", "503", "504"),
    "5xx": (
        "conn-failure",
        "empty-response",
        "junk-response",
        "response-timeout",
        "500",
        "501",
        "502",
        "503",
        "504",
    ),
}
_BALANCE = {
    "round_robin": "roundrobin",
    "least_request": "leastconn",
    "random": "random(1)",
}


@dataclass(frozen=True)
class ServerLine:
    """One `server` line: the runtime table's server and the options around it."""

    server: Server
    check: bool = False
    track: str | None = None
    check_h2: bool = False
    h2: bool = False
    send_proxy: bool = False
    cookie: bool = False
    resolve: bool = False

    @property
    def name(self) -> str:
        return self.server.name

    @property
    def address(self) -> Runtime:
        return Runtime(self.server.address)

    @property
    def weight(self) -> Runtime:
        return Runtime(str(self.server.weight))


@dataclass(frozen=True)
class Balance:
    """How a backend picks a server: `algorithm`, or hashing on a cookie the proxy inserts, a
    header or the source address."""

    kind: Literal["algorithm", "cookie", "header", "source"]
    algorithm: str = "roundrobin"
    name: str = ""
    """The cookie's or the header's name."""
    cookie_max_age: int = 0
    cookie_path: str = "/"


@dataclass(frozen=True)
class Checks:
    """The health check of a primary backend: HTTP (`http`) or a TCP connect."""

    http: bool
    path: str
    statuses: list[int]
    timeout: str
    interval: str
    rise: int
    fall: int


@dataclass(frozen=True)
class Limits:
    """A backend's connection limits: `maxconn` of each server (the cluster's limit shared
    among its endpoints, rounded up), and for HTTP the queue: at most `max_pending` requests
    wait, each at most `queue_timeout`. A tcp backend queues nothing: a connection beyond the
    limit is closed at once, as Envoy's tcp proxy does. Over HTTP/2, a request beyond
    `max_requests` in progress gets 503 at once, as on Envoy, instead of waiting in the queue
    (None: HTTP/1, where requests wait for one of the connections)."""

    maxconn: int
    total: int
    max_pending: int
    queue_timeout: str
    max_requests: int | None = None


@dataclass
class BackendSection:
    """One backend as the template writes it; `parts` are what features add before servers."""

    name: str
    cluster: Cluster
    where: str
    suffix: str
    mode: Literal["http", "tcp"]
    balance: Balance
    connect_timeout: str
    server_timeout: str
    retries: int
    retry_on: list[str]
    checks: Checks | None
    limits: Limits
    servers: list[ServerLine]
    parts: list[Part] = field(default_factory=list)

    @property
    def primary(self) -> bool:
        return not self.suffix


@dataclass
class BackendSet:
    """The backends a group's listeners use, collected while their routes are rendered."""

    clusters: Mapping[str, Cluster]
    variants: dict[str, set[Variant]] = field(default_factory=dict)

    def backend_for(self, cluster: str, route: Route) -> str:
        """The backend that forwards `route`'s requests to `cluster` (registered for output)."""
        variant = variant_of(route)
        self.variants.setdefault(cluster, set()).add(variant)
        return backend_name(cluster, variant)

    def sections(self, index: Mapping[str, int]) -> list[BackendSection]:
        """Every backend, clusters in declaration order, each cluster's primary first."""
        result = []
        for name, cluster in self.clusters.items():
            where = f"clusters[{index[name]}]"
            result.append(_backend(cluster, Variant(), where))
            for variant in sorted(
                self.variants.get(name, set()) - {Variant()},
                key=lambda v: backend_name(name, v),
            ):
                result.append(_backend(cluster, variant, where))
        return result


def _backend(cluster: Cluster, variant: Variant, where: str) -> BackendSection:
    l7 = cluster.protocol != "tcp"
    primary = not variant.suffix
    check = cluster.health_check
    retry_on: list[str] = []
    if l7 and variant.attempts:
        retry_on = list(dict.fromkeys(value for c in variant.retry_on for value in _RETRY_ON[c]))
    checks = None
    if check is not None and primary:
        checks = Checks(
            http=check.kind == "http",
            path=check.path,
            statuses=sorted(set(check.expected_statuses)),
            timeout=format_duration(check.timeout),
            interval=format_duration(check.interval),
            rise=check.healthy_threshold,
            fall=check.unhealthy_threshold,
        )
    servers = []
    for number, endpoint in enumerate(cluster.endpoints, start=1):
        server = f"ep{number}"
        parts = split_address(endpoint.address)
        ip = parts.ip
        host = parts.host if ip is None else ip.compressed if ip.version == 6 else str(ip)
        servers.append(
            ServerLine(
                Server(server, host, parts.port, endpoint.weight),
                check=check is not None and primary,
                track=f"{cluster.name}/{server}" if check is not None and not primary else None,
                check_h2=primary
                and check is not None
                and check.kind == "http"
                and cluster.protocol == "http2",
                h2=cluster.protocol == "http2",
                send_proxy=cluster.send_proxy_protocol,
                cookie=cluster.hash_on is not None and cluster.hash_on.cookie is not None,
                resolve=ip is None,
            )
        )
    return BackendSection(
        name=backend_name(cluster.name, variant),
        cluster=cluster,
        where=where,
        suffix=variant.suffix,
        mode="http" if l7 else "tcp",
        balance=_balance(cluster),
        connect_timeout=format_duration(cluster.connect_timeout),
        server_timeout=server_timeout(variant.timeout) if l7 else "1h",
        retries=variant.attempts if l7 else 0,
        retry_on=retry_on,
        checks=checks,
        limits=_limits(cluster, variant),
        servers=servers,
    )


def server_timeout(ms: int) -> str:
    """`timeout server` for a route timeout: `0` is HAProxy's "no timeout", as the model's."""
    return "0" if ms == NO_TIMEOUT else format_duration(ms)


def _limits(cluster: Cluster, variant: Variant) -> Limits:
    """Connections (HTTP/1, tcp) or requests (HTTP/2: HAProxy's `maxconn` counts streams) per
    endpoint; a queued request waits at most `queue_timeout`, else its route's timeout."""
    if cluster.protocol == "http2":
        total = cluster.max_requests
    elif cluster.protocol == "http1":
        total = min(cluster.max_connections, cluster.max_requests)
    else:
        total = cluster.max_connections
    queue = cluster.queue_timeout if cluster.queue_timeout is not None else variant.timeout
    return Limits(
        maxconn=math.ceil(total / len(cluster.endpoints)),
        total=total,
        max_pending=cluster.max_pending_requests,
        queue_timeout=server_timeout(queue),
        max_requests=cluster.max_requests if cluster.protocol == "http2" else None,
    )


def _balance(cluster: Cluster) -> Balance:
    hash_on = cluster.hash_on
    if hash_on is None:
        return Balance("algorithm", _BALANCE[cluster.lb_policy])
    if hash_on.cookie is not None:
        cookie = hash_on.cookie
        algorithm = _BALANCE.get(cluster.lb_policy, "roundrobin")  # hashing: round robin
        return Balance(
            "cookie",
            algorithm,
            name=cookie.name,
            cookie_max_age=cookie.ttl // 1000,
            cookie_path=cookie.path,
        )
    if hash_on.header is not None:
        return Balance("header", name=hash_on.header)
    return Balance("source")
