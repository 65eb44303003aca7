"""The API's own metrics: request counts and latencies by method, route template and status."""

from __future__ import annotations

from ..prometheus import Counter, Histogram


class ApiMetrics:
    """Request counts and latencies of the API, by method, route template and status."""

    def __init__(self) -> None:
        self.requests = Counter(
            "controlplane_api_requests_total", "API requests by method, route and status."
        )
        self.latency = Histogram(
            "controlplane_api_request_seconds", "API request latency by method and route."
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.inc((("method", method), ("route", route), ("status", str(status))))
        self.latency.observe(seconds, (("method", method), ("route", route)))

    def exposition(self) -> str:
        return self.requests.exposition() + self.latency.exposition()
