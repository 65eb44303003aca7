"""The sources of `/metrics`: Prometheus collectors, exposed in the text format.

A `MetricsSource` is a `prometheus_client` collector that adds its own families to
`/metrics` (the API's requests; the fleet's connected proxies, pushes, ACKs and NACKs,
push-to-ACK latency, HAProxy reloads and restarts). Each application exposes its own
sources, never the process-wide default registry, so two servers in one process (tests,
benchmarks) do not share counts.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, disable_created_metrics, generate_latest
from prometheus_client.registry import Collector

MetricsSource = Collector

# `_created` series would double every family; the counts are what operators read.
disable_created_metrics()

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def render(sources: Iterable[MetricsSource]) -> bytes:
    """The text of `/metrics`: every source's families, one after another."""
    registry = CollectorRegistry(auto_describe=False)
    for source in sources:
        registry.register(source)
    return generate_latest(registry)
