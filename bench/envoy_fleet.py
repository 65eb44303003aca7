"""Real Envoys fed by `controlplane serve`: from a REST write to every Envoy ACKing it and to
the last Envoy serving it.

    .venv/bin/python bench/envoy_fleet.py --envoys 50 100 [--changes 10]

Runs `controlplane serve` (SQLite store, `--insecure-local`, no HAProxy) as a subprocess and
N real Envoys (one worker each), each the one proxy of its node group with a listener of its
own port, every route to one cluster `app`. Two backends, `a` and `b`, say who they are. Each
change is a `PATCH` of `app`'s endpoints from one backend to the other; the clock starts just
before the write. *ACKed* is when `GET /v1/status/wait` for the revision answers (every Envoy
ACKed it); *serving* is when the last Envoy answers from the new backend (each Envoy polled
by a thread of its own every `POLL_EVERY` seconds). Printed per change, then p50 over the
changes, with the RSS of the Envoys and of `serve`, and the load average.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from xds_fanout import rss_of, serving, tree_pids

from controlplane.proxies.envoy import EnvoyProcess
from tests.harness.backends import BackendFleet, BackendSpec
from tests.harness.clients import http
from tests.harness.ports import free_port

POLL_EVERY = 0.05
"""Seconds between two requests to one Envoy while waiting for it to serve a change: the
resolution of *serving*. Polling faster, the pollers of 100 Envoys took the CPU serve needs."""


def fleet_config(ports: list[int], backend: str) -> dict[str, Any]:
    """One node group per Envoy, each with a listener on its own port; one cluster."""
    listeners = [
        {
            "name": f"l{i}",
            "address": f"127.0.0.1:{port}",
            "protocol": "http",
            "virtual_hosts": [
                {"name": "site", "domains": ["*"], "routes": [{"backends": [{"cluster": "app"}]}]}
            ],
        }
        for i, port in enumerate(ports)
    ]
    groups = [{"name": f"g{i}", "listeners": [f"l{i}"]} for i in range(len(ports))]
    clusters = [{"name": "app", "endpoints": [{"address": backend}]}]
    return {"listeners": listeners, "clusters": clusters, "node_groups": groups}


def answered_by(port: int) -> str | None:
    with contextlib.suppress(OSError):
        return http("127.0.0.1", port, "/", timeout=2).backend
    return None


def serving_from(port: int, backend: str, t0: float, deadline: float) -> float:
    """Seconds from `t0` until the Envoy on `port` answers from `backend`."""
    while time.time() < deadline:
        if answered_by(port) == backend:
            return time.time() - t0
        time.sleep(POLL_EVERY)
    raise TimeoutError(f"the Envoy on {port} never answered from {backend}")


def poll(port: int, backend: str, t0: float, times: list[float]) -> None:
    times.append(serving_from(port, backend, t0, t0 + 60))  # list.append is atomic


def run(count: int, changes: int) -> None:
    with tempfile.TemporaryDirectory(prefix="envoy-fleet-") as tmp, BackendFleet() as backends:
        found = backends.start_all([BackendSpec("a"), BackendSpec("b")])
        addresses = {name: backend.address for name, backend in found.items()}
        ports = [free_port() for _ in range(count)]
        seed = fleet_config(ports, addresses["a"])
        with serving(tmp, None, seed) as (url, xds_port, pid):
            envoys = [
                EnvoyProcess(Path(tmp) / f"envoy-{i}", f"envoy-{i}", f"g{i}", xds_port)
                for i in range(count)
            ]
            began = time.time()
            # Envoys die with the thread that started them (PR_SET_PDEATHSIG): the pool's
            # threads live until the Envoys are stopped.
            pool = ThreadPoolExecutor(8)
            try:
                list(pool.map(lambda e: e.start(120), envoys))
                with httpx.Client(base_url=url, timeout=120) as api:
                    while True:
                        proxies = api.get("/v1/status").json()["proxies"]
                        if sum(1 for p in proxies if p["current"]) >= count:
                            break
                        if time.time() - began > 600:
                            raise TimeoutError(f"initial sync: {len(proxies)} proxies")
                        time.sleep(0.2)
                    started = time.time() - began
                    envoy_mb = rss_of([e.process.pid for e in envoys if e.process])
                    print(
                        f"{count} Envoys started and synced in {started:.1f} s; Envoys' RSS "
                        f"{envoy_mb:.0f} MiB ({envoy_mb / count:.1f} each), serve's "
                        f"{rss_of(tree_pids(pid)):.0f} MiB",
                        flush=True,
                    )
                    acked, served = [], []
                    for change in range(1, changes + 1):
                        new = "b" if change % 2 else "a"
                        load = os.getloadavg()[0]
                        t0 = time.time()
                        reply = api.patch(
                            "/v1/clusters/app",
                            json={"endpoints": [{"address": addresses[new]}]},
                            headers={"Content-Type": "application/merge-patch+json"},
                        )
                        reply.raise_for_status()
                        revision = int(reply.headers["etag"].strip('"'))
                        times: list[float] = []
                        pollers = [
                            threading.Thread(target=poll, args=(p, new, t0, times)) for p in ports
                        ]
                        for poller in pollers:
                            poller.start()
                        waited = api.get(
                            "/v1/status/wait", params={"revision": revision, "timeout": 60}
                        ).json()
                        acked_s = time.time() - t0
                        for poller in pollers:
                            poller.join()
                        assert waited["converged"] and waited["acked"] >= count, (
                            waited,
                            api.get("/v1/status").text,
                        )
                        acked.append(acked_s)
                        served.append(max(times))
                        written = reply.elapsed.total_seconds() * 1000
                        print(
                            f"  change {change:>2}: write {written:.0f} ms, all ACKed "
                            f"{acked_s * 1000:.0f} ms, last serving "
                            f"{max(times) * 1000:.0f} ms (first {min(times) * 1000:.0f} ms), "
                            f"load {load:.1f}",
                            flush=True,
                        )
                    print(
                        f"{count} Envoys, p50 of {changes} changes: all ACKed "
                        f"{statistics.median(acked) * 1000:.0f} ms, last serving "
                        f"{statistics.median(served) * 1000:.0f} ms",
                        flush=True,
                    )
            finally:
                list(pool.map(lambda e: e.stop(), envoys))
                pool.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envoys", type=int, nargs="+", default=[50, 100])
    parser.add_argument("--changes", type=int, default=10)
    args = parser.parse_args()
    for count in args.envoys:
        run(count, args.changes)


if __name__ == "__main__":
    main()
