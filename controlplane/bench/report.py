"""The bench's results for people: a table beside the article's claims, what they mean for a
user-space proxy, and a chart (matplotlib, the `bench` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .l4_vs_l7 import PATHS, TLS_PATHS

COLUMNS = {
    "direct": "direct",
    "haproxy-tcp": "HAProxy tcp",
    "haproxy-http": "HAProxy http",
    "envoy-tcp": "Envoy tcp",
    "envoy-http": "Envoy http",
}


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if abs(value) >= 10_000:
        text = f"{value / 1000:,.1f}k"
    elif abs(value) >= 100:
        text = f"{value:,.0f}"
    else:
        text = f"{value:.1f}"
    return text + unit


def _bytes(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1024:.1f} KiB" if abs(value) >= 1024 else f"{value:.0f} B"


def table(data: dict[str, Any]) -> list[str]:
    """The measured figures per path, the article's L4 and L7 claims in the last columns."""
    results = data["results"]
    claims = data["claims"]
    rows: list[tuple[str, list[str], str, str]] = [
        (
            "new connections/s",
            [_number(results[p]["newconn_rate"]) for p in PATHS],
            claims["connections_per_s"]["L4"],
            claims["connections_per_s"]["L7"],
        ),
        (
            "  CPU per connection",
            [_number(results[p]["newconn_cpu_us"], " µs") for p in PATHS],
            "",
            "",
        ),
        ("requests/s keep-alive", [_number(results[p]["keepalive_rps"]) for p in PATHS], "", ""),
        (
            "  CPU per request",
            [_number(results[p]["keepalive_cpu_us"], " µs") for p in PATHS],
            "minimal",
            "significant",
        ),
        ("latency p50 (1 client)", [_number(results[p]["p50_us"], " µs") for p in PATHS], "", ""),
        (
            "  added p50",
            [_number(results[p]["added_p50_us"], " µs") if p != "direct" else "" for p in PATHS],
            claims["added_latency"]["L4"],
            claims["added_latency"]["L7"],
        ),
        (
            "  added p99",
            [_number(results[p]["added_p99_us"], " µs") if p != "direct" else "" for p in PATHS],
            "",
            "",
        ),
        (
            "memory per idle conn.",
            [_bytes(results[p]["idle_bytes_per_connection"]) for p in PATHS],
            claims["memory_per_connection"]["L4"],
            claims["memory_per_connection"]["L7"],
        ),
    ]
    head = ["", *COLUMNS.values(), "article L4", "article L7"]
    body = [[label, *cells, l4, l7] for label, cells, l4, l7 in rows]
    return _aligned([head, *body])


def tls_table(data: dict[str, Any]) -> list[str]:
    """TLS terminated by the proxy against passed through: rates and who spends the CPU."""
    tls = data["tls"]
    head = [
        "TLS",
        "mode",
        "new conn/s",
        "proxy CPU/conn",
        "backend CPU/conn",
        "req/s keep-alive",
        "proxy CPU/req",
    ]
    body = [
        [
            path,
            tls[path]["mode"],
            _number(tls[path]["newconn_rate"]),
            _number(tls[path]["newconn_cpu_us"], " µs"),
            _number(tls[path]["newconn_backend_cpu_us"], " µs"),
            _number(tls[path]["keepalive_rps"]),
            _number(tls[path]["keepalive_cpu_us"], " µs"),
        ]
        for path in TLS_PATHS
    ]
    return _aligned([head, *body])


def _aligned(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def reading(data: dict[str, Any]) -> list[str]:
    """What the figures say about the article's claims, for a user-space proxy."""
    r = data["results"]
    lines = []
    for proxy, name in (("haproxy", "HAProxy"), ("envoy", "Envoy")):
        tcp, http = r[f"{proxy}-tcp"], r[f"{proxy}-http"]
        lines.append(
            f"{name}: tcp {_number(tcp['newconn_cpu_us'], ' µs')} vs http "
            f"{_number(http['newconn_cpu_us'], ' µs')} CPU per new connection, "
            f"{_number(tcp['keepalive_cpu_us'], ' µs')} vs "
            f"{_number(http['keepalive_cpu_us'], ' µs')} "
            f"per keep-alive request; {_bytes(tcp['idle_bytes_per_connection'])} vs "
            f"{_bytes(http['idle_bytes_per_connection'])} per idle connection."
        )
    pooled = [
        name
        for proxy, name in (("haproxy", "HAProxy"), ("envoy", "Envoy"))
        if r[f"{proxy}-http"]["newconn_rate"] >= r[f"{proxy}-tcp"]["newconn_rate"]
    ]
    leaner = [
        name
        for proxy, name in (("haproxy", "HAProxy"), ("envoy", "Envoy"))
        if (r[f"{proxy}-http"]["idle_bytes_per_connection"] or 0)
        < (r[f"{proxy}-tcp"]["idle_bytes_per_connection"] or 0)
    ]
    lines += [
        "A user-space L4 proxy (HAProxy or Envoy in tcp mode) accepts the client's TCP "
        "connection and opens one to the backend for each: per new connection it pays as much "
        "as an L7 proxy, or more"
        + (
            f" (here {' and '.join(pooled)} took new connections faster in http mode, whose "
            "backend connections are pooled: the article's connection-pooling win)"
            if pooled
            else ""
        )
        + ". The article's 1M+ conn/s belongs to kernel L4 (IPVS, an NLB), which forwards "
        "packets without terminating TCP, not to a proxy in tcp mode.",
        "What L7 adds shows per request: parsing, routing and a second HTTP exchange; over "
        "keep-alive that is the CPU-per-request gap above. The latency either layer adds is "
        "tens of microseconds at the median on loopback, far below the article's 1-10 ms, "
        "which counts networks, TLS and queues; p99 on a shared machine mostly measures the "
        "scheduler.",
        "Memory per idle connection is the proxy's buffers and connection state (kernel socket "
        "buffers are not in the RSS); ~128 B is a kernel connection-table entry (IPVS), which "
        "no user-space proxy approaches"
        + (
            f". Here {' and '.join(leaner)} held less per idle connection in http mode than in "
            "tcp mode: an idle keep-alive connection holds no request buffer and shares pooled "
            "backend connections, while a tcp proxy keeps two connections and their buffers "
            "for as long as the client stays"
            if leaner
            else ""
        )
        + ".",
        "TLS: termination spends the handshake's CPU in the proxy, passthrough in the backend "
        "(the proxy only reads the SNI); the article's 'pass-through only' for L4 holds.",
    ]
    return lines


def chart(data: dict[str, Any], path: Path) -> bool:
    """Write the chart as a PNG; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    results, tls = data["results"], data["tls"]
    labels = list(COLUMNS.values())
    colors = ["#888888", "#4c72b0", "#1f3f7a", "#dd8452", "#a3501a"]
    figure, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    panels = [
        ("new connections/s", [results[p]["newconn_rate"] for p in PATHS]),
        ("requests/s over keep-alive", [results[p]["keepalive_rps"] for p in PATHS]),
        ("CPU µs per keep-alive request", [results[p]["keepalive_cpu_us"] for p in PATHS]),
        ("latency of one client, p50 / p99 (µs, log)", None),
        (
            "KiB per idle connection",
            [(results[p]["idle_bytes_per_connection"] or 0) / 1024 for p in PATHS],
        ),
        ("TLS: new connections/s", None),
    ]
    for axis, (title, values) in zip(axes.flat, panels, strict=True):
        axis.set_title(title)
        axis.grid(axis="y", alpha=0.3)
        if values is not None:
            axis.bar(labels, [v or 0 for v in values], color=colors)
            axis.tick_params(axis="x", rotation=30)
    latency = axes.flat[3]
    x = range(len(PATHS))
    for offset, q, color in ((-0.2, "p50", "#4c72b0"), (0.2, "p99", "#dd8452")):
        values = [results[p][f"{q}_us"] or 0 for p in PATHS]
        latency.bar([i + offset for i in x], values, 0.4, label=q, color=color)
    latency.set_yscale("log")
    latency.set_xticks(list(x), labels, rotation=30)
    latency.legend()
    tls_axis = axes.flat[5]
    tls_axis.bar(
        list(TLS_PATHS),
        [tls[p]["newconn_rate"] for p in TLS_PATHS],
        color=["#888888", "#1f3f7a", "#4c72b0", "#a3501a", "#dd8452"],
    )
    tls_axis.tick_params(axis="x", rotation=30)
    machine = data["machine"]
    figure.suptitle(
        f"L4 vs L7 through real proxies, one worker each ({data['settings']['generator']}; "
        f"{machine['cpus']} CPUs, load {machine['load_average_start'][0]:.2f} → "
        f"{machine['load_average_end'][0]:.2f})"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return True
