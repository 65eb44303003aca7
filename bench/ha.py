"""Two control-plane replicas on one PostgreSQL: how soon a write on one is live on an Envoy
attached to the other, beside the same on one replica, and how long an Envoy takes to be
current again after `kill -9` of the replica holding its stream, with the requests lost.

    .venv/bin/python bench/ha.py [--changes 50] [--kills 10]

Starts a private PostgreSQL server (fsync on), replicas `a` and `b` (`controlplane serve`
processes), two backends and two Envoys: `pinned`, whose bootstrap names only b, and
`roaming`, whose bootstrap names both replicas. Each change points the cluster at the other
backend; it is live when a request through the Envoy answers from it.

- propagation: from just before the `PUT /v1/config` to the first request through `pinned`
  answered by the new backend; written on a (cross-replica) and on b (single replica),
  alternately, `--changes` of each.
- failover: `roaming` serves requests one after another on new connections all along; the
  replica holding its stream (as the status says) is killed with SIGKILL and a change is
  written on the survivor at once; the time from the kill until `roaming` serves the change.
  The killed replica is started again (same name) before the next kill. Requests lost: the
  requests through `roaming` that failed, over all kills.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controlplane.envoy.bootstrap import bootstrap_yaml
from tests.harness.backends import BackendFleet, BackendSpec
from tests.harness.clients import http
from tests.harness.envoy import EnvoyProcess, wait_for
from tests.harness.ports import free_port
from tests.harness.postgres import running_postgres
from tests.harness.replicas import Api, ServeProcess

TOKEN = "bench-ha-token-0123456789"
GROUPS = {"pinned": "pinned", "roaming": "roaming"}


def config(ports: dict[str, int], backend: str) -> dict[str, Any]:
    def listener(name: str) -> dict[str, Any]:
        route = {"name": "default", "backends": [{"cluster": "web"}]}
        vhost = {"name": "site", "domains": ["*"], "routes": [route]}
        address = f"127.0.0.1:{ports[name]}"
        return {"name": name, "address": address, "protocol": "http", "virtual_hosts": [vhost]}

    return {
        "listeners": [listener(name) for name in GROUPS],
        "clusters": [{"name": "web", "endpoints": [{"address": backend}]}],
        "node_groups": [{"name": g, "listeners": [g]} for g in GROUPS],
    }


def answers(port: int) -> str | None:
    try:
        return http("127.0.0.1", port, "/", timeout=2).backend
    except OSError:
        return None


def live_after(port: int, backend: str, began: float, timeout: float = 30.0) -> float:
    """Seconds from `began` to the first request through `port` answered by `backend`."""
    deadline = time.perf_counter() + timeout
    while answers(port) != backend:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{backend} never answered through port {port}")
    return time.perf_counter() - began


class Load:
    """Requests one after another through a listener, each on a new connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.ok = 0
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                answer = http("127.0.0.1", self.port, "/", timeout=5)
                if answer.status == 200:
                    self.ok += 1
                else:
                    self.failed += 1
            except OSError:
                self.failed += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def holder(api: Api, node_id: str) -> str | None:
    for proxy in api.status()["proxies"]:
        if proxy["id"] == node_id and proxy["connected"]:
            return str(proxy["detail"]["replica"])
    return None


def quantiles(values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return f"p50 {statistics.median(ms):7.1f} ms   p95 {p95:7.1f} ms   (n={len(ms)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--kills", type=int, default=10)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="bench-ha-") as tmp_name,
        running_postgres(durable=True) as server,
        BackendFleet() as fleet,
    ):
        tmp = Path(tmp_name)
        db = server.create_database("bench_ha")
        backends = {n: fleet.start(BackendSpec(n)).address for n in ("one", "two")}
        ports = {name: free_port() for name in GROUPS}
        tokens, seed = tmp / "tokens.yaml", tmp / "config.yaml"
        tokens.write_text(f"- {{name: bench, token: {TOKEN}, scopes: [read, write]}}\n")
        seed.write_text(yaml.safe_dump(config(ports, backends["one"])))
        replicas = {n: ServeProcess(tmp, n, db, tokens, seed) for n in ("a", "b")}
        envoys: list[EnvoyProcess] = []
        apis: dict[str, Api] = {}
        try:
            for name, replica in replicas.items():
                replica.start()
                apis[name] = Api(replica, TOKEN)
            a, b = replicas["a"], replicas["b"]
            for node, servers in (("pinned", [b.xds]), ("roaming", [b.xds, a.xds])):
                (host, port), *others = servers
                text = bootstrap_yaml(
                    node, node, host, port, 0, retry_base_s=0.05, retry_max_s=0.5,
                    also_xds=others,
                )  # fmt: skip
                envoys.append(EnvoyProcess(tmp, node, node, port, bootstrap=text).start())
            current = "one"
            wait_for(
                "both Envoys serve", lambda: all(answers(p) == "one" for p in ports.values()), 30
            )

            cross: list[float] = []
            single: list[float] = []
            for _ in range(args.changes):
                for writer, figures in (("a", cross), ("b", single)):
                    current = "two" if current == "one" else "one"
                    began = time.perf_counter()
                    apis[writer].put_config(config(ports, backends[current]))
                    figures.append(live_after(ports["pinned"], current, began))
            print(f"propagation, write on b, Envoy on b (one replica): {quantiles(single)}")
            print(f"propagation, write on a, Envoy on b (across):      {quantiles(cross)}")

            failovers: list[float] = []
            load = Load(ports["roaming"])
            try:
                for _ in range(args.kills):
                    victim = wait_for(
                        "the roaming Envoy's replica", lambda: holder(apis["a"], "roaming"), 30
                    )
                    survivor = "b" if victim == "a" else "a"
                    current = "two" if current == "one" else "one"
                    killed_at = time.perf_counter()
                    replicas[victim].kill()
                    apis[survivor].put_config(config(ports, backends[current]))
                    failovers.append(live_after(ports["roaming"], current, killed_at))
                    replicas[victim].start()
            finally:
                load.stop()
            print(f"failover after kill -9 (current again on survivor): {quantiles(failovers)}")
            print(f"requests through the roaming Envoy: {load.ok} answered, {load.failed} failed")
        finally:
            for envoy in envoys:
                envoy.stop()
            for api in apis.values():
                api.close()
            for replica in replicas.values():
                replica.stop()


if __name__ == "__main__":
    main()
