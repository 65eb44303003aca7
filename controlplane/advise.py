"""`controlplane advise`: the L4-or-L7 advice for a config (`model.advice`), as text or JSON,
citing what each layer cost on a measured machine (`controlplane bench l4-vs-l7`'s JSON)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .model.advice import Advice

RECORDED = "recorded-l4-vs-l7.json"
"""The figures of the run docs/l4-vs-l7.md records, shipped with the package."""


@dataclass(frozen=True)
class Figures:
    """What L4 saves against L7 on one proxy, from a bench run."""

    proxy: str
    source: str
    rps: tuple[float, float]
    cpu_us: tuple[float, float]
    added_p50_us: tuple[float, float]
    idle_bytes: tuple[float, float]

    def line(self) -> str:
        l4, l7 = 0, 1
        return (
            f"{self.proxy} tcp vs http, 1 worker ({self.source}): "
            f"{self.rps[l4]:,.0f} vs {self.rps[l7]:,.0f} requests/s over keep-alive, "
            f"{self.cpu_us[l4]:.1f} vs {self.cpu_us[l7]:.1f} µs CPU per request, "
            f"+{self.added_p50_us[l4]:.0f} vs +{self.added_p50_us[l7]:.0f} µs p50 latency, "
            f"{self.idle_bytes[l4] / 1024:.1f} vs {self.idle_bytes[l7] / 1024:.1f} KiB per "
            "idle connection"
        )


def load_figures(path: Path | None) -> list[Figures]:
    """The figures of a bench JSON file, or of the recorded run; empty when it has none."""
    if path is not None:
        data = json.loads(path.read_text())
        source = f"measured here, {path.name}"
    else:
        text = resources.files("controlplane.bench").joinpath(RECORDED).read_text()
        data = json.loads(text)
        source = "the recorded run, docs/l4-vs-l7.md"
    results: dict[str, Any] = data.get("results", {})
    found = []
    for proxy in ("haproxy", "envoy"):
        l4, l7 = results.get(f"{proxy}-tcp"), results.get(f"{proxy}-http")
        if not l4 or not l7:
            continue

        def pair(key: str, a: dict[str, Any] = l4, b: dict[str, Any] = l7) -> tuple[float, float]:
            return float(a.get(key) or 0), float(b.get(key) or 0)

        found.append(
            Figures(
                proxy,
                source,
                pair("keepalive_rps"),
                pair("keepalive_cpu_us"),
                pair("added_p50_us"),
                pair("idle_bytes_per_connection"),
            )
        )
    return found


def as_text(advice: Advice, figures: list[Figures]) -> list[str]:
    """The advice as lines: per listener its layer and why, traps, then the two tiers."""
    lines: list[str] = []
    for item in advice.listeners:
        lines.append(f"listener {item.listener} ({item.protocol}, {item.layer}): {item.suggestion}")
        for need in item.needs:
            kind = "needs L7" if need.hard else "prefers L7"
            instead = f" (at L4: {need.substitute})" if need.substitute else ""
            lines.append(f"  {kind:<10} {need.feature}: {need.detail} at {need.where}{instead}")
        for kept in item.at_l4:
            lines.append(f"  at L4 too {kept.feature}: {kept.detail} at {kept.where}")
        if item.layer == "L7" and item.could_run_at_l4:
            lines.extend(f"  saves      {f.line()}" for f in figures)
        for trap in item.traps:
            lines.append(f"  trap       {trap.kind} at {trap.where}: {trap.message}")
    tiers = advice.two_tier
    lines.append(f"two tiers: {tiers.reason}")
    for group, members in tiers.groups.items():
        lines.append(f"  group {group}: {', '.join(members)}")
    if tiers.fits and not tiers.in_place:
        lines.extend(f"  L4 tier    {f.line()}" for f in figures[:1])
    return lines


def as_json(advice: Advice, figures: list[Figures]) -> dict[str, Any]:
    data = advice.as_json()
    data["measured"] = [
        {
            "proxy": f.proxy,
            "source": f.source,
            "keepalive_rps": {"tcp": f.rps[0], "http": f.rps[1]},
            "keepalive_cpu_us": {"tcp": f.cpu_us[0], "http": f.cpu_us[1]},
            "added_p50_us": {"tcp": f.added_p50_us[0], "http": f.added_p50_us[1]},
            "idle_bytes_per_connection": {"tcp": f.idle_bytes[0], "http": f.idle_bytes[1]},
        }
        for f in figures
    ]
    return data
