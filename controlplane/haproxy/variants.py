"""Which backend forwards a route's requests to a cluster: the cluster's primary backend for
the route defaults, else one named after the options HAProxy keeps per backend
(`api:t30s:r2-conn-gw`)."""

from __future__ import annotations

from dataclasses import dataclass

from ..model import Retries, Route, format_duration
from ..model.types import NO_TIMEOUT

DEFAULT_TIMEOUT_MS = 15_000

_RETRY_ABBREVIATION = {
    "connect_failure": "conn",
    "reset": "reset",
    "gateway_error": "gw",
    "5xx": "5xx",
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
        if self.timeout == NO_TIMEOUT:
            parts.append("tnone")
        elif self.timeout != DEFAULT_TIMEOUT_MS:
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


def route_backends(route: Route) -> list[str]:
    """The backend of each of `route`'s backends, in order."""
    variant = variant_of(route)
    return [backend_name(b.cluster, variant) for b in route.backends or ()]
