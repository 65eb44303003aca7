"""Prometheus text exposition: counters, histograms, and the sources of `/metrics`.

A `MetricsSource` adds its own families to `/metrics` (the API's requests; the fleet's
connected proxies, pushes, ACKs and NACKs, push-to-ACK latency, HAProxy reloads and
restarts), built from the `Counter` and `Histogram` here.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from typing import Protocol

Labels = tuple[tuple[str, str], ...]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class MetricsSource(Protocol):
    """Anything that contributes metric families to `/metrics`."""

    def exposition(self) -> str:
        """Prometheus text format (0.0.4): `# HELP`, `# TYPE` and sample lines."""
        ...


def _labels(labels: Labels, extra: Labels = ()) -> str:
    pairs = (*labels, *extra)
    if not pairs:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Counter:
    """A monotonically increasing count per label set."""

    def __init__(self, name: str, help: str) -> None:
        self.name, self.help = name, help
        self._values: dict[Labels, float] = {}
        self._lock = threading.Lock()

    def inc(self, labels: Labels = (), amount: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, labels: Labels = ()) -> float:
        return self._values.get(labels, 0.0)

    def exposition(self) -> str:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        with self._lock:
            items = sorted(self._values.items())
        lines += [f"{self.name}{_labels(k)} {_number(v)}" for k, v in items]
        return "\n".join(lines) + "\n"


class Histogram:
    """Observations counted into cumulative buckets per label set, with their sum."""

    def __init__(self, name: str, help: str, buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.name, self.help = name, help
        self.buckets = tuple(sorted(buckets))
        self._series: dict[Labels, tuple[list[int], list[float]]] = {}
        self._lock = threading.Lock()

    def observe(self, value: float, labels: Labels = ()) -> None:
        with self._lock:
            counts, total = self._series.setdefault(labels, ([0] * len(self.buckets), [0.0, 0]))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    counts[i] += 1
            total[0] += value
            total[1] += 1

    def exposition(self) -> str:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._lock:
            items = sorted((k, (list(c), list(t))) for k, (c, t) in self._series.items())
        for labels, (counts, (total, count)) in items:
            for bound, n in zip(self.buckets, counts, strict=True):
                le = (("le", _number(bound)),)
                lines.append(f"{self.name}_bucket{_labels(labels, le)} {n}")
            lines.append(f"{self.name}_bucket{_labels(labels, (('le', '+Inf'),))} {int(count)}")
            lines.append(f"{self.name}_sum{_labels(labels)} {_number(total)}")
            lines.append(f"{self.name}_count{_labels(labels)} {int(count)}")
        return "\n".join(lines) + "\n"


def render(sources: Iterable[MetricsSource]) -> str:
    """The text of `/metrics`: every source's families, one after another."""
    return "".join(source.exposition() for source in sources)
