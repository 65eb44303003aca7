"""Propagation: from a REST write to every connected real proxy serving the change.

    .venv/bin/python bench/propagation.py [--changes 50] [--bulk 1000] [--bulk-rounds 3]

Runs `controlplane serve` (SQLite store, `--insecure-local`, one local HAProxy relocated onto
127.0.0.2) as a subprocess, one real Envoy fed by its xDS server, and two backends, `old` and
`new`, that say who they are. Every route is on the same port of both proxies: Envoy on
127.0.0.1, HAProxy on 127.0.0.2.

- One route: `--changes` times, a route `/probe-<i>` to `new` is added with one `POST` (until
  then `/probe-<i>` falls to the default route, `old`); the clock starts just before the write,
  and both proxies are polled with requests to `/probe-<i>` until each answers from `new`.
- Bulk: `--bulk` new routes `/bulk<k>-<j>` to `new` in one `PUT /v1/config` (replacing the
  previous round's); the clock stops when the last of them answers from `new` on both
  proxies, after which every one of them is checked on both.

The baseline, measured in the same run, is the write request alone (store + validation, the
REST answer), so the share of propagation is visible.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controlplane.proxies.envoy import EnvoyProcess, wait_for
from controlplane.proxies.haproxy.runtime import MasterCLI
from tests.harness.backends import BackendFleet, BackendSpec
from tests.harness.clients import HttpSession
from tests.harness.ports import free_port

ENVOY_HOST = "127.0.0.1"
HAPROXY_HOST = "127.0.0.2"
LIVE_TIMEOUT = 30.0
POLL_TIMEOUT = 2.0

CONFIG = """\
listeners:
  - name: web
    address: {envoy}:{port}
    protocol: http
    virtual_hosts:
      - name: site
        domains: ["*"]
        routes:
          - name: both  # keeps both clusters in use
            match: {{path: {{prefix: /both}}}}
            backends: [{{cluster: old}}, {{cluster: new}}]
          - name: default
            backends: [{{cluster: old}}]
clusters:
  - {{name: old, endpoints: [{{address: "{old}"}}]}}
  - {{name: new, endpoints: [{{address: "{new}"}}]}}
"""


@dataclass
class Sample:
    """One change: seconds from just before the write to its answer, and to each proxy
    serving it."""

    write: float
    envoy: float
    haproxy: float

    @property
    def both(self) -> float:
        return max(self.envoy, self.haproxy)


class Prober:
    """Keep-alive clients of both proxies; a request that fails is retried on a new
    connection (an HAProxy reload closes idle ones)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sessions = {
            "envoy": HttpSession(ENVOY_HOST, port, timeout=POLL_TIMEOUT),
            "haproxy": HttpSession(HAPROXY_HOST, port, timeout=POLL_TIMEOUT),
        }

    def backend(self, proxy: str, path: str) -> str | None:
        try:
            return self.sessions[proxy].request(path).backend
        except OSError:
            self.sessions[proxy].close()
            return None

    def wait_live(self, paths: dict[str, str], began: float) -> dict[str, float]:
        """Poll until each proxy answers its path from `new`; seconds since `began`."""
        live: dict[str, float] = {}
        deadline = time.monotonic() + LIVE_TIMEOUT
        while len(live) < len(paths):
            for proxy, path in paths.items():
                if proxy not in live and self.backend(proxy, path) == "new":
                    live[proxy] = time.perf_counter() - began
            if time.monotonic() > deadline:
                raise TimeoutError(f"not live within {LIVE_TIMEOUT}s: {paths}, live: {live}")
        return live

    def close(self) -> None:
        for session in self.sessions.values():
            session.close()


@contextlib.contextmanager
def serving(workdir: Path, port: int, backends: dict[str, str]) -> Iterator[str]:
    """`controlplane serve` with its local HAProxy, and an Envoy fed by it; yields the API
    URL once both proxies run the seed. Stops everything it started, also on failure."""
    config = workdir / "config.yaml"
    config.write_text(CONFIG.format(envoy=ENVOY_HOST, port=port, **backends))
    api, xds = free_port(), free_port()
    command = [
        str(Path(sys.executable).with_name("controlplane")),
        "serve",
        "--db", str(workdir / "store.db"),
        "--config", str(config),
        "--api", f"127.0.0.1:{api}",
        "--xds", f"127.0.0.1:{xds}",
        "--insecure-local",
        "--haproxy", "default",
        "--haproxy-bind", HAPROXY_HOST,
        "--workdir", str(workdir / "run"),
    ]  # fmt: skip
    url = f"http://127.0.0.1:{api}"
    with open(workdir / "serve.log", "wb") as log:
        server = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    master = MasterCLI(str(workdir / "run" / "haproxy-default" / "master.sock"))
    haproxy_pid: int | None = None
    envoy = EnvoyProcess(workdir, "bench-envoy", "default", xds, log_level="error")
    try:
        wait_for("the API", lambda: _answers(url, server), 30)
        haproxy_pid = wait_for("the local HAProxy", lambda: _master_pid(master), 30)
        envoy.start()
        wait_for("both proxies on the seed", lambda: _converged(url), 30)
        yield url
    finally:
        envoy.stop()
        _stop(server, haproxy_pid)


def _answers(url: str, server: subprocess.Popen[bytes]) -> bool:
    if server.poll() is not None:
        raise RuntimeError(f"controlplane serve exited with {server.returncode}")
    try:
        return httpx.get(f"{url}/v1/status", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _master_pid(master: MasterCLI) -> int | None:
    try:
        return master.show_proc().master.pid
    except (OSError, ValueError):
        return None


def _converged(url: str) -> bool:
    data = httpx.get(f"{url}/v1/status/wait", params={"timeout": 1}, timeout=5).json()
    return bool(data["converged"] and data["total"] == 2)


def _stop(server: subprocess.Popen[bytes], haproxy_pid: int | None) -> None:
    """SIGTERM lets the server stop its HAProxy; whatever is left is killed by its id."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    if haproxy_pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(haproxy_pid, signal.SIGKILL)  # the manager runs it in its own group


def one_route_changes(api: httpx.Client, prober: Prober, count: int) -> list[Sample]:
    """Add `/probe-<i>` routes one at a time; time each until both proxies serve it."""
    samples = []
    for i in range(count):
        path = f"/probe-{i}/x"
        if prober.backend("envoy", path) != "old" or prober.backend("haproxy", path) != "old":
            raise RuntimeError(f"{path} is not on the default route before the change")
        route = {
            "name": f"probe-{i}",
            "match": {"path": {"prefix": f"/probe-{i}"}},
            "backends": [{"cluster": "new"}],
        }
        began = time.perf_counter()
        reply = api.post("/v1/listeners/web/virtual_hosts/site/routes", json=route)
        written = time.perf_counter() - began
        reply.raise_for_status()
        live = prober.wait_live({"envoy": path, "haproxy": path}, began)
        samples.append(Sample(written, live["envoy"], live["haproxy"]))
    return samples


def bulk_change(api: httpx.Client, prober: Prober, count: int, round_: int) -> Sample:
    """Replace the previous round's bulk routes with `count` new ones in one PUT; time it
    until the last new route answers from `new` on both proxies, then check them all."""
    config: dict[str, Any] = api.get("/v1/config").raise_for_status().json()
    [host] = config["listeners"][0]["virtual_hosts"]
    kept = [r for r in host["routes"] if not str(r.get("name", "")).startswith("bulk")]
    added = [
        {
            "name": f"bulk{round_}-{j}",
            "match": {"path": {"prefix": f"/bulk{round_}-{j}"}},
            "backends": [{"cluster": "new"}],
        }
        for j in range(count)
    ]
    host["routes"] = added + kept
    last = f"/bulk{round_}-{count - 1}/x"
    began = time.perf_counter()
    reply = api.put("/v1/config", json=config)
    written = time.perf_counter() - began
    reply.raise_for_status()
    live = prober.wait_live({"envoy": last, "haproxy": last}, began)
    missing = [
        (proxy, j)
        for j in range(count)
        for proxy in ("envoy", "haproxy")
        if prober.backend(proxy, f"/bulk{round_}-{j}/y") != "new"
    ]
    if missing:
        raise RuntimeError(f"{len(missing)} bulk routes not served, e.g. {missing[:5]}")
    return Sample(written, live["envoy"], live["haproxy"])


def haproxy_applies(api: httpx.Client) -> tuple[float, float]:
    """(count, total seconds) of the local HAProxy's applies so far, from /metrics."""
    found = {"count": 0.0, "sum": 0.0}
    for line in api.get("/metrics").raise_for_status().text.splitlines():
        for key in found:
            if (
                line.startswith(f"controlplane_push_to_ack_seconds_{key}{{")
                and 'kind="haproxy"' in line
            ):
                found[key] += float(line.rsplit(" ", 1)[1])
    return found["count"], found["sum"]


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def report(singles: list[Sample], bulks: list[Sample], bulk: int, apply_mean: float) -> None:
    rows: list[tuple[str, Callable[[Sample], float], list[Sample], str]] = [
        ("one route: REST write alone (baseline)", lambda s: s.write, singles, ""),
        ("one route: write → live on Envoy", lambda s: s.envoy, singles, ""),
        ("one route: write → live on HAProxy", lambda s: s.haproxy, singles, ""),
        ("one route: write → live on both", lambda s: s.both, singles, "p50 < 100 ms"),
        (f"{bulk:,} routes, one PUT: write alone (baseline)", lambda s: s.write, bulks, ""),
        (f"{bulk:,} routes: write → live on Envoy", lambda s: s.envoy, bulks, ""),
        (f"{bulk:,} routes: write → live on HAProxy", lambda s: s.haproxy, bulks, ""),
        (f"{bulk:,} routes: write → live on both", lambda s: s.both, bulks, "< 2 s"),
    ]
    print()
    print("| measure | n | p50 | p95 | max | target |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for name, value, samples, target in rows:
        values = [value(s) for s in samples]
        print(
            f"| {name} | {len(values)} | {ms(statistics.median(values))} "
            f"| {ms(percentile(values, 0.95))} | {ms(max(values))} | {target} |"
        )
    print(
        f"HAProxy apply alone (haproxy -c, write, runtime map update), mean over the single-"
        f"route changes: {ms(apply_mean)}"
    )
    for i, s in enumerate(bulks, start=1):
        print(f"bulk round {i}: write {ms(s.write)}, Envoy {ms(s.envoy)}, HAProxy {ms(s.haproxy)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=50, help="single-route changes")
    parser.add_argument("--bulk", type=int, default=1000, help="routes in the bulk PUT")
    parser.add_argument("--bulk-rounds", type=int, default=3, help="bulk PUTs to time")
    args = parser.parse_args()
    port = free_port()
    with (
        tempfile.TemporaryDirectory(prefix="propagation-") as tmp,
        BackendFleet() as fleet,
    ):
        found = fleet.start_all([BackendSpec("old"), BackendSpec("new")])
        backends = {name: backend.address for name, backend in found.items()}
        with serving(Path(tmp), port, backends) as url, httpx.Client(base_url=url) as api:
            prober = Prober(port)
            try:
                print(f"{args.changes} single-route changes...", flush=True)
                applies_before = haproxy_applies(api)
                singles = one_route_changes(api, prober, args.changes)
                count, total = (
                    a - b for a, b in zip(haproxy_applies(api), applies_before, strict=True)
                )
                print(f"{args.bulk_rounds} PUTs of {args.bulk:,} routes each...", flush=True)
                bulks = [
                    bulk_change(api, prober, args.bulk, k) for k in range(1, args.bulk_rounds + 1)
                ]
            finally:
                prober.close()
    report(singles, bulks, args.bulk, total / max(count, 1))


if __name__ == "__main__":
    main()
