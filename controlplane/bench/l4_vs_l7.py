"""`controlplane bench l4-vs-l7`: what L4 and L7 cost here, through real proxies the product
configures (`lab`), one worker each, beside a client talking to the backend directly.

Measured per path (direct, HAProxy tcp/http, Envoy tcp/http): new connections per second (a
request per connection), requests per second over keep-alive, the latency one client sees
(p50, p99) and what the proxy adds to the direct path, and the memory a proxy holds per idle
connection (N connections opened through it, each after one request; its RSS growth / N).
TLS: termination (https, the proxy decrypts) against passthrough (tls, the backend decrypts).
Beside each rate, the CPU time the proxy's process spent per request, from /proc: on a shared
machine a rate says how busy the machine was, CPU per request what the proxy costs.

Rates come from `wrk` (one thread); `requests` instead runs the bounded Python client (small
runs; sequential requests, so its rates are one client's), which also holds idle connections.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from . import load, procfs
from .lab import HOST, Lab, running

PATHS = ("direct", "haproxy-tcp", "haproxy-http", "envoy-tcp", "envoy-http")
TLS_PATHS = ("direct-tls", "haproxy-https", "haproxy-tls", "envoy-https", "envoy-tls")
CLAIMS = {
    "connections_per_s": {"L4": "1M+", "L7": "10K-100K"},
    "added_latency": {"L4": "< 1 ms", "L7": "1-10 ms"},
    "memory_per_connection": {"L4": "~128 B", "L7": "~16 KB+"},
    "tls": {"L4": "pass-through only", "L7": "full termination"},
}
"""The article's performance comparison (L4: NLB/IPVS, L7: ALB/Nginx)."""


@dataclass(frozen=True)
class Settings:
    """How much load: `seconds` of `wrk` with `connections` each, or with `requests` set,
    that many requests per measurement from the Python client; `idle` connections held for
    the memory measurement."""

    seconds: int = 5
    connections: int = 16
    requests: int | None = None
    idle: int = 1000

    @property
    def generator(self) -> str:
        return "python" if self.requests is not None else "wrk"


Measure = Callable[[str, int, bool, bool], load.Run]


def _measure(settings: Settings) -> Measure:
    """How one rate is taken: (path's port, keep-alive?, TLS?) → Run."""

    def measure(host: str, port: int, keepalive: bool, tls: bool) -> load.Run:
        if settings.requests is not None:
            count = settings.requests
            return (
                load.keepalive(host, port, count, tls)
                if keepalive
                else load.new_connections(host, port, count, tls)
            )
        url = f"{'https' if tls else 'http'}://{host}:{port}/"
        return load.wrk(url, settings.connections, settings.seconds, close=not keepalive)

    return measure


def _latency(settings: Settings, port: int) -> load.Run:
    if settings.requests is not None:
        return load.keepalive(HOST, port, settings.requests)
    return load.wrk(f"http://{HOST}:{port}/", 1, settings.seconds, latency=True)


def _with_cpu(pids: list[int], work: Callable[[], load.Run]) -> tuple[load.Run, list[float]]:
    """`work`'s run, and the CPU microseconds each of `pids` spent per request meanwhile."""
    before = [procfs.cpu_seconds(pid) for pid in pids]
    run = work()
    after = [procfs.cpu_seconds(pid) for pid in pids]
    per = max(run.requests, 1)
    return run, [round((b - a) * 1_000_000 / per, 2) for a, b in zip(before, after, strict=True)]


def _idle_bytes(lab: Lab, path: str, count: int) -> float:
    """RSS growth of the path's process per connection held idle through it."""
    pid = lab.pid_of(path)
    load.idle_connections(HOST, lab.ports[path], 8)  # warm up pools; closed on return
    before = procfs.rss_bytes(pid)
    held = load.idle_connections(HOST, lab.ports[path], count)
    try:
        after = procfs.rss_bytes(pid)
    finally:
        for sock in held:
            sock.close()
    return round((after - before) / count, 1)


def _version(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)
    except OSError:
        return "unknown"
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def measure_paths(lab: Lab, settings: Settings, say: Callable[[str], None]) -> dict[str, Any]:
    """The plain-TCP paths: rates, CPU per request, latency, memory per idle connection."""
    measure = _measure(settings)
    results: dict[str, dict[str, Any]] = {}
    for path in PATHS:
        port, pid = lab.ports[path], lab.pid_of(path)
        say(f"{path}: new connections")
        fresh, (fresh_cpu,) = _with_cpu([pid], partial(measure, HOST, port, False, False))
        say(f"{path}: keep-alive requests")
        kept, (kept_cpu,) = _with_cpu([pid], partial(measure, HOST, port, True, False))
        say(f"{path}: latency of one client")
        timed = _latency(settings, port)
        say(f"{path}: {settings.idle} idle connections")
        results[path] = {
            "newconn_rate": round(fresh.rate, 1),
            "newconn_cpu_us": fresh_cpu,
            "newconn_errors": fresh.errors,
            "keepalive_rps": round(kept.rate, 1),
            "keepalive_cpu_us": kept_cpu,
            "keepalive_errors": kept.errors,
            "p50_us": timed.p50_us,
            "p99_us": timed.p99_us,
            "idle_bytes_per_connection": _idle_bytes(lab, path, settings.idle),
            "load_average": procfs.load_average()[0],
        }
    direct = results["direct"]
    for values in results.values():
        for q in ("p50", "p99"):
            own, base = values[f"{q}_us"], direct[f"{q}_us"]
            values[f"added_{q}_us"] = round(own - base, 1) if own and base else None
    return results


def measure_tls(lab: Lab, settings: Settings, say: Callable[[str], None]) -> dict[str, Any]:
    """TLS terminated by the proxy (https) or passed through to the backend (tls): who spends
    the CPU of each handshake and of each request."""
    measure = _measure(settings)
    backend = lab.pids["direct"]
    results: dict[str, dict[str, Any]] = {}
    for path in TLS_PATHS:
        port = lab.ports[path]
        pids = [lab.pid_of(path)] if path != "direct-tls" else []
        say(f"{path}: new TLS connections")
        fresh, fresh_cpu = _with_cpu([*pids, backend], partial(measure, HOST, port, False, True))
        say(f"{path}: keep-alive requests over TLS")
        kept, kept_cpu = _with_cpu([*pids, backend], partial(measure, HOST, port, True, True))
        results[path] = {
            "mode": "direct" if not pids else "termination" if "https" in path else "passthrough",
            "newconn_rate": round(fresh.rate, 1),
            "newconn_cpu_us": fresh_cpu[0] if pids else None,
            "newconn_backend_cpu_us": fresh_cpu[-1],
            "keepalive_rps": round(kept.rate, 1),
            "keepalive_cpu_us": kept_cpu[0] if pids else None,
            "keepalive_backend_cpu_us": kept_cpu[-1],
            "errors": fresh.errors + kept.errors,
        }
    return results


def run(workdir: Path, settings: Settings, say: Callable[[str], None]) -> dict[str, Any]:
    """Start the lab, measure everything, stop it; the results as JSON-able data."""
    began = procfs.load_average()
    started = time.time()
    with running(workdir) as lab:
        paths = measure_paths(lab, settings, say)
        tls = measure_tls(lab, settings, say)
    from ..proxies.envoy import envoy_binary

    return {
        "version": 1,
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_start": list(began),
            "load_average_end": list(procfs.load_average()),
            "haproxy": _version(["haproxy", "-v"]),
            "envoy": _version([envoy_binary(), "--version"]),
            "wrk": "wrk" if load.wrk_binary() else None,
            "seconds": round(time.time() - started, 1),
        },
        "settings": {
            "generator": settings.generator,
            "seconds": settings.seconds,
            "connections": settings.connections,
            "requests": settings.requests,
            "idle_connections": settings.idle,
            "workers": "one each: HAProxy nbthread 1, Envoy --concurrency 1; the backend is an "
            "HAProxy of one thread answering 200 itself",
        },
        "results": paths,
        "tls": tls,
        "claims": CLAIMS,
    }
