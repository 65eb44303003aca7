"""Backends: one per cluster, plus one per other combination of route options that HAProxy
keeps at backend level (timeout, retries).

A cluster's *primary* backend is named after it and carries the route defaults (15s timeout,
no retries) and the health checks. A route with other options gets a backend named
`<cluster>:<options>` (`api:t30s`, `api:r2-conn-gw`) whose servers `track` the primary's, so
each endpoint is health-checked once. Every server is one line,
`server NAME HOST:PORT weight W ...`, so the manager can change addresses and weights at
runtime; endpoints given by host name resolve through the `system` resolvers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..model import Cluster, Retries, Route, format_duration, split_address
from .render_text import address, dq, lf_literal, word

DEFAULT_TIMEOUT_MS = 15_000
RESOLVERS = "system"

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
_RETRY_ABBREVIATION = {
    "connect_failure": "conn",
    "reset": "reset",
    "gateway_error": "gw",
    "5xx": "5xx",
}
_BALANCE = {
    "round_robin": "roundrobin",
    "least_request": "leastconn",
    "random": "random(1)",
}


@dataclass(frozen=True)
class Variant:
    """The route options HAProxy holds per backend."""

    timeout: int = DEFAULT_TIMEOUT_MS
    attempts: int = 0
    retry_on: tuple[str, ...] = ()

    @property
    def suffix(self) -> str:
        parts = []
        if self.timeout != DEFAULT_TIMEOUT_MS:
            parts.append(f"t{format_duration(self.timeout)}")
        if self.attempts:
            conditions = "-".join(_RETRY_ABBREVIATION[c] for c in self.retry_on)
            parts.append(f"r{self.attempts}-{conditions}")
        return ":".join(parts)


def variant_of(route: Route) -> Variant:
    """The backend-level options of a forwarding route."""
    retries: Retries | None = route.retries
    if retries is None:
        return Variant(timeout=route.timeout)
    return Variant(route.timeout, retries.attempts, tuple(sorted(set(retries.retry_on))))


def backend_name(cluster: str, variant: Variant) -> str:
    """`api` for the route defaults, `api:t30s:r2-conn-gw` otherwise."""
    return f"{cluster}:{variant.suffix}" if variant.suffix else cluster


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

    def sections(self, index: Mapping[str, int]) -> list[list[str]]:
        """Every backend, as comment + section lines, clusters in declaration order."""
        result = []
        for name, cluster in self.clusters.items():
            where = f"clusters[{index[name]}]"
            result.append(_backend(cluster, Variant(), where, primary=None))
            for variant in sorted(
                self.variants.get(name, set()) - {Variant()},
                key=lambda v: backend_name(name, v),
            ):
                result.append(_backend(cluster, variant, where, primary=name))
        return result


def _backend(cluster: Cluster, variant: Variant, where: str, primary: str | None) -> list[str]:
    name = backend_name(cluster.name, variant)
    l7 = cluster.protocol != "tcp"
    label = f"# cluster {cluster.name} ({where})"
    if variant.suffix:
        label += f", for routes with {variant.suffix}"
    lines = [label, f"backend {word(name)}", f"    mode {'http' if l7 else 'tcp'}"]
    lines.extend(f"    {line}" for line in _balance(cluster))
    lines.append(f"    timeout connect {format_duration(cluster.connect_timeout)}")
    if l7:
        lines.append(f"    timeout server {format_duration(variant.timeout)}")
        if variant.attempts:
            conditions = dict.fromkeys(value for c in variant.retry_on for value in _RETRY_ON[c])
            lines.append(f"    retries {variant.attempts}")
            lines.append(f"    retry-on {' '.join(conditions)}")
            lines.append("    option redispatch 1")
        else:
            lines.append("    retries 0")
    else:
        lines.append("    timeout server 1h")
        lines.append("    retries 0")
    check = cluster.health_check
    if check is not None and primary is None:
        if check.kind == "http":
            lines.append("    option httpchk")
            lines.append(
                f"    http-check send meth GET uri {word(check.path)} ver HTTP/1.1 "
                f"hdr host {word(lf_literal(cluster.name))}"
            )
            statuses = sorted(set(check.expected_statuses))
            if len(statuses) == 1:
                lines.append(f"    http-check expect status {statuses[0]}")
            else:
                alternatives = "|".join(str(s) for s in statuses)
                lines.append(f"    http-check expect rstatus ^({alternatives})$")
        lines.append(f"    timeout check {format_duration(check.timeout)}")
        lines.append(
            f"    default-server inter {format_duration(check.interval)} "
            f"rise {check.healthy_threshold} fall {check.unhealthy_threshold}"
        )
    for number, endpoint in enumerate(cluster.endpoints, start=1):
        server = f"ep{number}"
        parts = split_address(endpoint.address)
        options = [f"server {server} {address(parts)} weight {endpoint.weight}"]
        if check is not None:
            options.append("check" if primary is None else f"track {word(f'{primary}/{server}')}")
            if primary is None and check.kind == "http" and cluster.protocol == "http2":
                options.append("check-proto h2")
        if cluster.protocol == "http2":
            options.append("proto h2")
        if cluster.send_proxy_protocol:
            options.append("send-proxy-v2")
        if cluster.hash_on is not None and cluster.hash_on.cookie is not None:
            options.append(f"cookie {server}")
        if parts.ip is None:
            options.append(f"resolvers {RESOLVERS} init-addr last,libc,none resolve-prefer ipv4")
        lines.append("    " + " ".join(options))
    return lines


def _balance(cluster: Cluster) -> list[str]:
    hash_on = cluster.hash_on
    if hash_on is None:
        return [f"balance {_BALANCE[cluster.lb_policy]}"]
    if hash_on.cookie is not None:
        cookie = hash_on.cookie
        attrs = f"attr {dq(f'Max-Age={cookie.ttl // 1000}')}"
        if cookie.path != "/":
            attrs += f" attr {dq(f'Path={cookie.path}')}"
        return [
            "balance roundrobin",
            f"cookie {word(cookie.name)} insert indirect nocache {attrs}",
        ]
    if hash_on.header is not None:
        return [f"balance {word(f'hdr({hash_on.header})')}", "hash-type consistent"]
    return ["balance source", "hash-type consistent"]
