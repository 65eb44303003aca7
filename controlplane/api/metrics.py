"""The API's own metrics: request counts and latencies by method, route template and status."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Histogram
from prometheus_client.metrics_core import Metric

from ..prometheus import LATENCY_BUCKETS


class ApiMetrics:
    """Request counts and latencies of the API, by method, route template and status."""

    def __init__(self) -> None:
        self.requests = Counter(
            "controlplane_api_requests",
            "API requests by method, route and status.",
            ("method", "route", "status"),
            registry=None,
        )
        self.latency = Histogram(
            "controlplane_api_request_seconds",
            "API request latency by method and route.",
            ("method", "route"),
            registry=None,
            buckets=LATENCY_BUCKETS,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def collect(self) -> Iterable[Metric]:
        yield from self.requests.collect()
        yield from self.latency.collect()
