"""Prometheus families of the fleet: proxies connected and behind the newest revision, pushes,
ACKs and NACKs, push-to-ACK latency, HAProxy reloads versus runtime updates, and HAProxy
restarts after it died."""

from __future__ import annotations

import threading
from typing import Any

from ..prometheus import Counter, Histogram
from ..xds.types import short_name
from .ledger import Event, Ledger
from .status import LedgerStatus


class FleetMetrics:
    """A `MetricsSource` fed by the ledger's events as they happen; the gauges are the
    status's counts, kept as proxies change (a scrape never walks the fleet)."""

    def __init__(self, ledger: Ledger, status: LedgerStatus) -> None:
        self.status = status
        self.pushes = Counter("controlplane_pushes_total", "Configurations sent to proxies.")
        self.acks = Counter("controlplane_acks_total", "Configurations proxies accepted.")
        self.nacks = Counter("controlplane_nacks_total", "Configurations proxies refused.")
        self.latency = Histogram(
            "controlplane_push_to_ack_seconds", "From sending a configuration to its ACK."
        )
        self.haproxy_applies = Counter(
            "controlplane_haproxy_applies_total",
            "HAProxy configuration changes by how they were applied (runtime, reload, ...).",
        )
        self.haproxy_restarts = Counter(
            "controlplane_haproxy_restarts_total",
            "HAProxy restarts by its supervisor after it died, by outcome (restarted, failed).",
        )
        self._sent: dict[tuple[str, str, str], float] = {}
        self._lock = threading.Lock()
        ledger.observe(self._on_event)

    def _on_event(
        self, node_id: str, group: str, kind: str, event: Event, detail: dict[str, Any]
    ) -> None:
        labels = (("kind", kind), ("group", group), ("type", short_name(event.type_url)))
        key = (node_id, event.type_url, event.version)
        with self._lock:
            if event.action == "sent":
                self.pushes.inc(labels)
                self._sent[key] = event.at
                if len(self._sent) > 100_000:
                    self._sent.clear()
                return
            sent_at = self._sent.pop(key, None)
        if event.action == "ack":
            self.acks.inc(labels)
            if sent_at is not None:
                self.latency.observe(event.at - sent_at, labels[:2])
        elif event.action == "nack":
            self.nacks.inc(labels)
        elif event.action in ("restarted", "restart failed"):
            outcome = "restarted" if event.action == "restarted" else "failed"
            self.haproxy_restarts.inc((("group", group), ("outcome", outcome)))
        if kind == "haproxy" and "mode" in detail:
            self.haproxy_applies.inc((("group", group), ("mode", str(detail["mode"]))))
            if "duration" in detail:
                self.latency.observe(float(detail["duration"]), labels[:2])

    def exposition(self) -> str:
        gauges = sorted(((g, k), n) for (k, g), n in self.status.gauges().items())
        lines = [
            "# HELP controlplane_connected_proxies Proxies connected, per group and kind.",
            "# TYPE controlplane_connected_proxies gauge",
        ]
        lines += [
            f'controlplane_connected_proxies{{group="{g}",kind="{k}"}} {connected}'
            for (g, k), (connected, _) in gauges
            if connected
        ]
        lines += [
            "# HELP controlplane_proxies_behind Connected proxies that do not run the newest "
            "revision published (not yet, or they refused it), per group and kind.",
            "# TYPE controlplane_proxies_behind gauge",
        ]
        lines += [
            f'controlplane_proxies_behind{{group="{g}",kind="{k}"}} {behind}'
            for (g, k), (connected, behind) in gauges
            if connected
        ]
        families = (
            self.pushes,
            self.acks,
            self.nacks,
            self.latency,
            self.haproxy_applies,
            self.haproxy_restarts,
        )
        return "\n".join(lines) + "\n" + "".join(f.exposition() for f in families)
