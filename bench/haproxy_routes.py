"""HAProxy route tables: render, validate and reload time, and requests per second for 10
versus 10,000 routes, the renderer's map design versus a plain ACL chain.

    .venv/bin/python bench/haproxy_routes.py [--seconds 5]

Needs haproxy and wrk on PATH or in /usr/sbin (the backend is a second HAProxy answering 200).
Everything runs
on 127.0.0.1 with free ports; HAProxy runs one worker with one thread (`nbthread 1`, the
renderer's default), pinned to CPU 0 while the backend and wrk share CPU 1. Beside requests per
second, HAProxy's CPU time per request is read from /proc (the worker's user + system time
over the requests wrk completed): other work on the machine moves the rate by tens of percent,
the CPU per request far less. Cases are played in interleaved rounds and medians printed.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controlplane.bench.answering import answering
from controlplane.bench.procfs import processes_cpu_seconds as cpu_seconds
from controlplane.haproxy.bundle import Bundle
from controlplane.haproxy.render import render
from controlplane.model import Config, parse_config
from controlplane.proxies.haproxy.manager import HAProxyManager
from tests.harness.ports import free_port

LOOPBACK = "127.0.0.1"
WRK_SCRIPT = """
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/svc" .. math.random(0, {count} - 1) .. "/x")
end
"""


def routes_config(count: int, listen: int, backend: str, conditional: float = 0.0) -> Config:
    """`count` routes: `/svc<i>` prefixes to one cluster; a `conditional` share of them are
    extra routes on existing paths with a header or method condition the benchmark's GETs
    do not meet (so they are looked at and fall back)."""
    extra = int(count * conditional)
    plain = count - extra
    routes: list[dict[str, Any]] = [
        {"match": {"path": {"prefix": f"/svc{i}"}}, "backends": [{"cluster": "app"}]}
        for i in range(plain)
    ]
    for j in range(extra):
        match: dict[str, Any] = {"path": {"prefix": f"/svc{j * (plain // max(extra, 1))}"}}
        if j % 2:
            match["method"] = "POST"
        else:
            match["headers"] = [{"name": "x-tenant", "exact": f"t{j}"}]
        routes.append({"match": match, "backends": [{"cluster": "app"}]})
    return parse_config(
        {
            "listeners": [
                {
                    "name": "web",
                    "address": f"{LOOPBACK}:{listen}",
                    "protocol": "http",
                    "forwarded_for": False,
                    "virtual_hosts": [{"name": "site", "domains": ["*"], "routes": routes}],
                }
            ],
            "clusters": [{"name": "app", "endpoints": [{"address": backend}]}],
        }
    )


def acl_chain_bundle(count: int, listen: int, backend: str) -> Bundle:
    """The same `count` prefix routes as a plain list of `use_backend ... if` rules."""
    lines = [
        "global",
        "    nbthread 1",
        "defaults",
        "    mode http",
        "    option idle-close-on-response",
        "    timeout connect 5s",
        "    timeout client 30s",
        "    timeout server 30s",
        "frontend web",
        f"    bind {LOOPBACK}:{listen}",
    ]
    lines += [
        f"    use_backend app if {{ path /svc{i} }} || {{ path_beg /svc{i}/ }}"
        for i in range(count)
    ]
    lines += ["backend app", f"    server ep1 {backend} weight 1"]
    return Bundle.of("\n".join(lines) + "\n")


def measured(manager: HAProxyManager, port: int, count: int, seconds: int) -> tuple[float, float]:
    """(requests per second, HAProxy's CPU microseconds per request) of one wrk run, the CPU
    time read from /proc for HAProxy's worker: noise on the machine moves it far less than
    the rate, which waits for CPU the others take."""
    workers = [w.pid for w in manager.processes().workers]
    before = cpu_seconds(workers)
    rate, requests = wrk(port, count, seconds)
    return rate, (cpu_seconds(workers) - before) / requests * 1e6


def wrk(port: int, count: int, seconds: int) -> tuple[float, int]:
    """(requests per second, requests) of a wrk run."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT.replace("{count}", str(count)))
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "1",
            "wrk",
            "-t1",
            "-c50",
            f"-d{seconds}s",
            "-s",
            script.name,
            f"http://{LOOPBACK}:{port}/",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    Path(script.name).unlink()
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non_2xx:
        raise RuntimeError(f"wrk saw {non_2xx.group(1)} error answers:\n{out}")
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    assert found and total, out
    return float(found.group(1)), int(total.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})
    random.seed(1)
    backend_port, listen = free_port(), free_port()
    backend = f"{LOOPBACK}:{backend_port}"
    workdir = Path(tempfile.mkdtemp(prefix="hapb-", dir="/tmp"))
    manager = HAProxyManager(workdir)
    try:
        print("## render; manager.apply as a runtime map update and as a validated reload")
        print(f"{'routes':>8} {'render s':>9} {'maps KB':>8} {'runtime s':>10} {'reload s':>9}")
        manager.start(render(routes_config(1, listen, backend), "default"))
        for count in (10, 1_000, 10_000):
            config = routes_config(count, listen, backend)
            began = time.perf_counter()
            bundle = render(config, "default")
            rendered = time.perf_counter() - began
            runtime = manager.apply(bundle)
            assert runtime.ok and runtime.mode == "runtime", runtime
            plain = bundle
            reloaded = Bundle.of(plain.cfg + "# reload\n", plain.map_entries, plain.files)
            reload = manager.apply(reloaded)
            assert reload.ok and reload.mode == "reload", reload
            reload = manager.apply(plain)
            assert reload.ok and reload.mode == "reload", reload
            size = sum(len(t) for t in bundle.maps.values()) / 1024
            print(
                f"{count:>8} {rendered:>9.3f} {size:>8.0f} {runtime.duration:>10.3f} "
                f"{reload.duration:>9.3f}"
            )
        print()
        print(
            f"## requests/s, wrk -t1 -c50 -d{args.seconds}s, random /svc<i>/x, nbthread 1, "
            f"median of {args.rounds} interleaved rounds"
        )
        cases = [
            ("map design, 10 routes", 10, routes_config(10, listen, backend)),
            ("map design, 10,000 routes", 10_000, routes_config(10_000, listen, backend)),
            (
                "map design, 10 routes, 2 of them with header/method conditions",
                8,
                routes_config(10, listen, backend, conditional=0.2),
            ),
            (
                "map design, 10,000 routes, 10% with header/method conditions",
                9_000,
                routes_config(10_000, listen, backend, conditional=0.1),
            ),
            ("ACL chain, 10 routes", 10, None),
            ("ACL chain, 10,000 routes", 10_000, None),
        ]
        bundles = [
            render(config, "default")
            if config is not None
            else acl_chain_bundle(paths, listen, backend)
            for _, paths, config in cases
        ]
        figures: list[list[tuple[float, float]]] = [[] for _ in cases]
        with answering(LOOPBACK, backend_port):
            for _ in range(args.rounds):
                for i, (_, paths, _) in enumerate(cases):
                    result = manager.apply(bundles[i])
                    assert result.ok, result.error
                    figures[i].append(measured(manager, listen, paths, args.seconds))
        print(f"{'req/s':>8} {'cpu us/req':>10}  case  (each round: req/s, us/req)")
        for (label, _, _), runs in zip(cases, figures, strict=True):
            rate = statistics.median(r for r, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            shown = ", ".join(f"{r:.0f} {c:.1f}" for r, c in runs)
            print(f"{rate:>8.0f} {cpu:>10.2f}  {label}  ({shown})")
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    finally:
        manager.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
