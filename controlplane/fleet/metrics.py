"""Prometheus families of the fleet: proxies connected and behind the newest revision, pushes,
ACKs and NACKs, push-to-ACK latency, HAProxy reloads versus runtime updates, and HAProxy
restarts after it died."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from ..prometheus import LATENCY_BUCKETS
from ..xds.types import short_name
from .ledger import Event, Ledger
from .status import LedgerStatus

PER_TYPE = ("kind", "group", "type")


def _counter(name: str, help: str, labels: tuple[str, ...]) -> Counter:
    return Counter(name, help, labels, registry=None)


class FleetMetrics:
    """A metrics source fed by the ledger's events as they happen; the gauges are the
    status's counts, kept as proxies change (a scrape never walks the fleet)."""

    def __init__(self, ledger: Ledger, status: LedgerStatus) -> None:
        self.status = status
        self.pushes = _counter("controlplane_pushes", "Configurations sent to proxies.", PER_TYPE)
        self.acks = _counter("controlplane_acks", "Configurations proxies accepted.", PER_TYPE)
        self.nacks = _counter("controlplane_nacks", "Configurations proxies refused.", PER_TYPE)
        self.latency = Histogram(
            "controlplane_push_to_ack_seconds",
            "From sending a configuration to its ACK.",
            ("kind", "group"),
            registry=None,
            buckets=LATENCY_BUCKETS,
        )
        self.haproxy_applies = _counter(
            "controlplane_haproxy_applies",
            "HAProxy configuration changes by how they were applied (runtime, reload, ...).",
            ("group", "mode"),
        )
        self.haproxy_restarts = _counter(
            "controlplane_haproxy_restarts",
            "HAProxy restarts by its supervisor after it died, by outcome (restarted, failed).",
            ("group", "outcome"),
        )
        self._sent: dict[tuple[str, str, str], float] = {}
        self._lock = threading.Lock()
        ledger.observe(self._on_event)

    def _on_event(
        self, node_id: str, group: str, kind: str, event: Event, detail: dict[str, Any]
    ) -> None:
        labels = (kind, group, short_name(event.type_url))
        key = (node_id, event.type_url, event.version)
        with self._lock:
            if event.action == "sent":
                self.pushes.labels(*labels).inc()
                self._sent[key] = event.at
                if len(self._sent) > 100_000:
                    self._sent.clear()
                return
            sent_at = self._sent.pop(key, None)
        if event.action == "ack":
            self.acks.labels(*labels).inc()
            if sent_at is not None:
                self.latency.labels(kind, group).observe(event.at - sent_at)
        elif event.action == "nack":
            self.nacks.labels(*labels).inc()
        elif event.action in ("restarted", "restart failed"):
            outcome = "restarted" if event.action == "restarted" else "failed"
            self.haproxy_restarts.labels(group, outcome).inc()
        if kind == "haproxy" and "mode" in detail:
            self.haproxy_applies.labels(group, str(detail["mode"])).inc()
            if "duration" in detail:
                self.latency.labels(kind, group).observe(float(detail["duration"]))

    def collect(self) -> Iterable[Metric]:
        connected = GaugeMetricFamily(
            "controlplane_connected_proxies",
            "Proxies connected, per group and kind.",
            labels=("group", "kind"),
        )
        behind = GaugeMetricFamily(
            "controlplane_proxies_behind",
            "Connected proxies that do not run the newest revision published (not yet, or "
            "they refused it), per group and kind.",
            labels=("group", "kind"),
        )
        for (kind, group), (count, late) in sorted(self.status.gauges().items()):
            if count:
                connected.add_metric((group, kind), count)
                behind.add_metric((group, kind), late)
        yield connected
        yield behind
        for family in (
            self.pushes,
            self.acks,
            self.nacks,
            self.latency,
            self.haproxy_applies,
            self.haproxy_restarts,
        ):
            yield from family.collect()
