"""A large write against a real API server, and what the rest of the API sees meanwhile.

    .venv/bin/python bench/large_write.py [--megabytes 8] [--rounds 1]
    .venv/bin/python bench/large_write.py --small-writes 20 [--routes 10000] [--clusters 1000]

Serves the REST API as `controlplane serve` does (uvicorn on the event loop, SQLite store,
the per-proxy dry-run explainer) and sends a YAML config of about `--megabytes` (one listener,
one route per cluster, four endpoints per cluster) to `POST /v1/config:validate`, then to
`PUT /v1/config`. While each request is in flight a second client asks `GET /v1/status` back
to back; the figures are the write's duration and the status latencies during it. The
baseline, measured in the same run, is the status latency with no write in flight.

`--small-writes N` instead loads a config of `--routes` routes over `--clusters` clusters
(four endpoints each) and times N writes of one object each through REST, taking turns: a
cluster's endpoints patched, a route created, that route deleted; then the same writes
in-process, split into checking (validation of the whole result) and committing.

`--keep-collector` leaves Python's cyclic garbage collector running during the work the
server offloads (it pauses it), to show what the pause is worth. `--stages` then times, in
this process, the steps a dry run goes through: parsing the YAML,
validating the whole config, the model diff, and the per-proxy detail (compiling both
configs for Envoy and HAProxy).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controlplane.fleet import EnvoyPlane, HAProxyPlane, PlaneExplainer
from controlplane.serve import ApiServer, build_app
from controlplane.store import SQLiteStore
from controlplane.xds.cache import SnapshotCache
from tests.harness.loop_thread import LoopThread

BYTES_PER_CLUSTER = 257
"""About what one cluster (and its route) adds to the YAML below."""


def big_config(megabytes: float) -> dict[str, Any]:
    """A valid config of about `megabytes` of YAML."""
    count = int(megabytes * 1_000_000 / BYTES_PER_CLUSTER)
    return routes_over_clusters(count, count)


def routes_over_clusters(count: int, clusters_count: int) -> dict[str, Any]:
    """One listener, one virtual host of `count` routes spread over `clusters_count` clusters."""
    routes = [
        {
            "name": f"r{i}",
            "match": {"path": {"prefix": f"/svc{i}"}},
            "backends": [{"cluster": f"c{i % clusters_count}"}],
        }
        for i in range(count)
    ]
    clusters = [
        {
            "name": f"c{i}",
            "endpoints": [{"address": f"127.0.0.{1 + j}:{10000 + i % 50000}"} for j in range(4)],
        }
        for i in range(clusters_count)
    ]
    listener = {
        "name": "web",
        "address": "127.0.0.1:10000",
        "protocol": "http",
        "virtual_hosts": [{"name": "site", "domains": ["*"], "routes": routes}],
    }
    return {"listeners": [listener], "clusters": clusters}


class StatusProbe:
    """Asks `GET /v1/status` back to back on its own connection, recording each latency."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StatusProbe:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(300)

    def _run(self) -> None:
        with httpx.Client(timeout=300) as client:
            while not self._stop.is_set():
                began = time.perf_counter()
                client.get(f"{self.url}/v1/status").raise_for_status()
                self.latencies.append(time.perf_counter() - began)
                time.sleep(0.01)


def summary(latencies: list[float]) -> str:
    ms = sorted(x * 1000 for x in latencies)
    if not ms:
        return "no status answer"
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return (
        f"{len(ms)} answers, median {statistics.median(ms):.1f} ms, p99 {p99:.1f} ms, "
        f"max {ms[-1]:.1f} ms"
    )


def stages(text: bytes) -> None:
    """Where a dry run of `text` spends its time, step by step (as the server runs them)."""
    from controlplane.api.deps import _check_shape, parse_body
    from controlplane.api.diff import model_diff
    from controlplane.api.offload import collector_paused
    from controlplane.api.writes import ConfigWriter
    from controlplane.model import PROXY_KINDS

    writer = ConfigWriter(SQLiteStore(":memory:"), PROXY_KINDS)
    with collector_paused():
        began = time.perf_counter()
        body = parse_body(text, "application/yaml", True)
        parsed = time.perf_counter()
        config = writer.check(body)
        checked = time.perf_counter()
        list(model_diff(None, config))
        diffed = time.perf_counter()
        PlaneExplainer([EnvoyPlane(SnapshotCache()), HAProxyPlane()]).explain(None, config)
        explained = time.perf_counter()
        as_json = json.dumps(body).encode()
        started = time.perf_counter()
        parse_body(as_json, "application/json", False)
        json_parsed = time.perf_counter()
        _check_shape(body)
        shape_checked = time.perf_counter()
    shape = shape_checked - json_parsed
    print(
        f"stages: parse {parsed - began:.1f} s (of which the depth and size check {shape:.2f} s), "
        f"validate {checked - parsed:.1f} s, diff {diffed - checked:.1f} s, per-proxy detail "
        f"{explained - diffed:.1f} s; the same body as JSON parses in "
        f"{json_parsed - started - shape:.2f} s"
    )


SmallWrite = tuple[str, str, Any]


def small_writes(count: int) -> list[SmallWrite]:
    """`count` writes of one object each: method, URL, JSON body."""
    routes = "/v1/listeners/web/virtual_hosts/site/routes"
    writes: list[SmallWrite] = []
    for n in range(count):
        if n % 3 == 0:
            endpoints = [{"address": f"127.0.0.9:{20000 + n}"}]
            writes.append(("PATCH", f"/v1/clusters/c{n}", {"endpoints": endpoints}))
        elif n % 3 == 1:
            route = {"name": f"new{n}", "match": {"path": {"prefix": f"/new{n}"}}}
            writes.append(("POST", routes, {**route, "backends": [{"cluster": "c1"}]}))
        else:
            writes.append(("DELETE", f"{routes}/new{n - 1}", None))
    return writes


def time_small_writes(routes: int, clusters: int, count: int) -> None:
    """Small writes to a large config through REST, then checking and committing in-process."""
    from controlplane.api import objects
    from controlplane.api.writes import ConfigWriter, plain
    from controlplane.model import PROXY_KINDS

    data = routes_over_clusters(routes, clusters)
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "bench.db")
        thread = LoopThread("bench-api")
        app = build_app(store, "127.0.0.1", insecure_local=True)
        server = ApiServer(app, "127.0.0.1", 0)
        try:
            thread.run(server.start())
            with httpx.Client(base_url=server.url, timeout=600) as client:
                began = time.perf_counter()
                client.put("/v1/config", json=data).raise_for_status()
                print(
                    f"load {routes} routes, {clusters} clusters: "
                    f"{time.perf_counter() - began:.1f} s"
                )
                took: dict[str, list[float]] = {}
                for method, url, body in small_writes(count):
                    began = time.perf_counter()
                    client.request(method, url, json=body).raise_for_status()
                    took.setdefault(method, []).append(time.perf_counter() - began)
            print(f"through REST: {milliseconds(took)}")
        finally:
            thread.run(server.stop())
            thread.close()
        writer = ConfigWriter(store, PROXY_KINDS)
        kinds = {"PATCH": objects.CLUSTER, "POST": objects.ROUTE, "DELETE": objects.ROUTE}
        steps: dict[str, list[float]] = {}
        for method, url, body in small_writes(count):
            head = store.head()
            assert head is not None
            began = time.perf_counter()
            changed = objects.editable(plain(head.config))
            kind = kinds[method]
            parents = ("web", "site") if kind is objects.ROUTE else ()
            if method == "PATCH":
                objects.patch(changed, kind, parents, url.rsplit("/", 1)[1], body)
            elif method == "POST":
                objects.create(changed, kind, parents, body)
            else:
                objects.delete(changed, kind, parents, url.rsplit("/", 1)[1])
            config = writer.check(changed, head.config)
            checked = time.perf_counter()
            store.commit(config, head.number, "bench")
            steps.setdefault("check", []).append(checked - began)
            steps.setdefault("commit", []).append(time.perf_counter() - checked)
        print(f"in-process: {milliseconds(steps)}")
        store.close()


def milliseconds(took: dict[str, list[float]]) -> str:
    return "; ".join(
        f"{name} median {statistics.median(xs) * 1000:.1f} ms, max {max(xs) * 1000:.1f} ms"
        for name, xs in took.items()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--megabytes", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--stages", action="store_true", help="also time each step in-process")
    parser.add_argument("--keep-collector", action="store_true", help="do not pause the GC")
    parser.add_argument("--small-writes", type=int, default=0, help="time N one-object writes")
    parser.add_argument("--routes", type=int, default=10_000)
    parser.add_argument("--clusters", type=int, default=1_000)
    args = parser.parse_args()
    if args.small_writes:
        time_small_writes(args.routes, args.clusters, args.small_writes)
        return
    if args.keep_collector:
        from controlplane.api import offload

        offload.collector_paused = contextlib.nullcontext  # type: ignore[assignment]

    text = yaml.safe_dump(big_config(args.megabytes), sort_keys=False).encode()
    print(f"body: {len(text) / 1e6:.1f} MB of YAML")
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "bench.db")
        thread = LoopThread("bench-api")
        app = build_app(
            store,
            "127.0.0.1",
            insecure_local=True,
            explainer=PlaneExplainer([EnvoyPlane(SnapshotCache()), HAProxyPlane()]),
        )
        server = ApiServer(app, "127.0.0.1", 0)
        try:
            thread.run(server.start())
            with StatusProbe(server.url) as idle:
                time.sleep(2)
            print(f"baseline, no write: status {summary(idle.latencies)}")
            headers = {"Content-Type": "application/yaml"}
            with httpx.Client(base_url=server.url, timeout=600, headers=headers) as client:
                for round_ in range(1, args.rounds + 1):
                    for method, path in (("POST", "/v1/config:validate"), ("PUT", "/v1/config")):
                        with StatusProbe(server.url) as probe:
                            began = time.perf_counter()
                            reply = client.request(method, path, content=text)
                            took = time.perf_counter() - began
                        print(
                            f"round {round_}: {method} {path}: HTTP {reply.status_code} in "
                            f"{took:.1f} s; meanwhile status {summary(probe.latencies)}"
                        )
        finally:
            thread.run(server.stop())
            thread.close()
            store.close()
    if args.stages:
        stages(text)


if __name__ == "__main__":
    main()
