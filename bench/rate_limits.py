"""Rate limits on both proxies in one run: how accurate they are, and what a limit that never
triggers costs.

    .venv/bin/python bench/rate_limits.py [--seconds 10] [--rounds 3] [--cost-only]

Accuracy: keys limited to `rate` per second are sent 1x, 2x and 10x their rate for `seconds`
(10 periods by default) by `wrk` pacing each connection (its `delay` hook), with 1 key
(100/s) and with 1,000 keys taken in turn (1/s each), fresh keys for each run; the load
reached is printed beside the one asked for (one wrk thread, one proxy worker). The issue's
tolerance: a key
sending at or above its rate admits between rate x T and rate x T + burst, so the run's
admitted requests must lie within [keys x rate x T, keys x (rate x T + burst)], or equal what
was sent when that is less.

Cost: requests per second, unpaced (`wrk -c 50`), through a route without a limit and the same
route with a limit that never triggers (1,000,000/s per x-user), with 1 key and 1,000 keys;
beside it the proxy's CPU time per request (its process's user + system time from /proc
over the run, divided by the requests answered: what the limit costs the proxy, whatever else
the shared cores run); interleaved rounds, the medians printed, with the load average.

Envoy runs one worker, HAProxy one thread; the backend is an HAProxy answering 200 itself.
Needs haproxy and wrk. Everything listens on 127.0.0.1. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controlplane.bench.lab import HOST, BenchError, _XdsThread
from controlplane.bench.load import parse_wrk, wrk_binary
from controlplane.bench.procfs import cpu_seconds, load_average
from controlplane.fleet import EnvoyPlane
from controlplane.haproxy.render import render
from controlplane.model import Config, parse_config
from controlplane.ports import free_port
from controlplane.proxies.envoy import EnvoyProcess
from controlplane.proxies.haproxy.manager import HAProxyManager
from controlplane.xds.cache import SnapshotCache

PROXIES = ("envoy", "haproxy")
ROUTES = {
    "none": None,
    "never": {"requests": 1_000_000, "per": "1s", "key": {"header": "x-user"}},
    "one": {"requests": 100, "per": "1s", "key": {"header": "x-user"}},
    "many": {"requests": 1, "per": "1s", "burst": 5, "key": {"header": "x-user"}},
}
"""The listeners of each proxy: no limit, one that never triggers, and the accuracy limits of
1 key (100/s, burst 100) and of 1,000 keys (1/s each, burst 5: a bucket of one token loses
what a late request leaves unused, and no sequence of requests keeps up with it)."""
KEYS = {"one": 1, "many": 1_000}
CONNECTIONS = 50

PACED = """
local keys, delay_ms, n = {keys}, {delay}, 0
request = function()
  n = n + 1
  return wrk.format("GET", "/", {{["x-user"] = "{prefix}" .. (n % keys)}})
end
delay = function() return delay_ms end
"""
UNPACED = """
local keys, n = {keys}, 0
request = function()
  n = n + 1
  return wrk.format("GET", "/", {{["x-user"] = "user" .. (n % keys)}})
end
"""
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def bench_config() -> tuple[Config, dict[str, int]]:
    ports = {f"{p}-{r}": free_port() for p in PROXIES for r in ROUTES}
    ports["backend"] = free_port()

    def listener(name: str, route: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": name,
            "address": f"{HOST}:{ports[name]}",
            "protocol": "http",
            "forwarded_for": False,
            "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [route]}],
        }

    listeners = [listener("backend", {"direct_response": {"status": 200, "body": "ok"}})]
    for proxy in PROXIES:
        for name, limit in ROUTES.items():
            route: dict[str, Any] = {"backends": [{"cluster": "origin"}]}
            if limit is not None:
                route["rate_limit"] = limit
            listeners.append(listener(f"{proxy}-{name}", route))
    data = {
        "listeners": listeners,
        "clusters": [{"name": "origin", "endpoints": [{"address": f"{HOST}:{ports['backend']}"}]}],
        "node_groups": [
            {"name": "backend", "listeners": ["backend"]},
            *({"name": p, "listeners": [f"{p}-{r}" for r in ROUTES]} for p in PROXIES),
        ],
    }
    return parse_config(data), ports


@contextlib.contextmanager
def running(workdir: Path, config: Config) -> Iterator[dict[str, int]]:
    """The backend and HAProxy (managed, one thread each) and an Envoy fed over xDS; yields
    the pid of each proxy's process that serves (HAProxy's worker)."""
    pids: dict[str, int] = {}
    with contextlib.ExitStack() as stack:
        for group in ("backend", "haproxy"):
            manager = HAProxyManager(workdir / group, threads=1, supervise_every=None)
            stack.callback(manager.stop)
            result = manager.start(render(config, group))
            if not result.ok:
                raise BenchError(f"HAProxy ({group}) did not start: {result.error}")
            pids[group] = int(manager.runtime.show_info()["Pid"])
        cache = SnapshotCache()
        plane = EnvoyPlane(cache)
        plane.publish(1, {"envoy": plane.compile(config, "envoy")}, frozenset())
        xds = _XdsThread(cache)
        stack.callback(xds.close)
        envoy = EnvoyProcess(workdir / "envoy", "bench-envoy", "envoy", xds.port, concurrency=1)
        stack.callback(envoy.stop)
        envoy.start()
        assert envoy.process is not None
        pids["envoy"] = envoy.process.pid
        yield pids


@dataclass(frozen=True)
class Sent:
    requests: int
    refused: int
    seconds: float

    @property
    def admitted(self) -> int:
        return self.requests - self.refused


def run_wrk(port: int, script: str, connections: int, seconds: int, workdir: Path) -> Sent:
    binary = wrk_binary()
    if binary is None:
        raise BenchError("wrk is not installed (apt-get install wrk)")
    lua = workdir / "script.lua"
    lua.write_text(script)
    command = [binary, "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(lua)]
    done = subprocess.run(
        [*command, f"http://{HOST}:{port}/"],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=False,
    )
    run = parse_wrk(done.stdout)
    refused = _NON_2XX.search(done.stdout)
    return Sent(run.requests, int(refused.group(1)) if refused else 0, run.seconds)


def accuracy(ports: dict[str, int], seconds: int, workdir: Path) -> list[dict[str, Any]]:
    rows = []
    for name, keys in KEYS.items():
        limit = ROUTES[name]
        assert limit is not None
        rate = limit["requests"]
        for times in (1, 2, 10):
            offered = rate * keys * times  # requests per second over all keys
            connections = min(CONNECTIONS, offered)
            delay = round(1000 * connections / offered)
            for proxy in PROXIES:
                script = PACED.format(keys=keys, delay=delay, prefix=f"{times}x-")
                sent = run_wrk(ports[f"{proxy}-{name}"], script, connections, seconds, workdir)
                burst = limit.get("burst", rate)
                low = min(sent.requests, keys * rate * seconds)
                high = min(sent.requests, keys * (rate * seconds + burst))
                rows.append(
                    {
                        "proxy": proxy,
                        "keys": keys,
                        "load": f"{times}x",
                        "reached": sent.requests / (keys * rate * seconds),
                        "sent": sent.requests,
                        "admitted": sent.admitted,
                        "expected": [low, high],
                        "ratio": sent.admitted / (keys * rate * seconds),
                        "within": low <= sent.admitted <= high,
                    }
                )
                print(_accuracy_line(rows[-1]), flush=True)
    return rows


def _accuracy_line(row: dict[str, Any]) -> str:
    low, high = row["expected"]
    verdict = "within" if row["within"] else "OUTSIDE"
    return (
        f"{row['proxy']:8} {row['keys']:>5} keys at {row['load']:>3} ({row['reached']:.1f}x "
        f"reached): sent {row['sent']:>6}, "
        f"admitted {row['admitted']:>6} of [{low}, {high}] ({row['ratio']:.2f} of rate x T) "
        f"{verdict}"
    )


def cost(
    ports: dict[str, int], pids: dict[str, int], seconds: int, rounds: int, workdir: Path
) -> dict[str, Any]:
    cases = {"none": ("none", 1), "never_1_key": ("never", 1), "never_1000_keys": ("never", 1000)}
    rates: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    for _ in range(rounds):
        for proxy in PROXIES:
            for case, (name, keys) in cases.items():
                script = UNPACED.format(keys=keys)
                before = cpu_seconds(pids[proxy])
                sent = run_wrk(ports[f"{proxy}-{name}"], script, CONNECTIONS, seconds, workdir)
                used = cpu_seconds(pids[proxy]) - before
                rate = sent.requests / sent.seconds if sent.seconds else 0.0
                rates.setdefault((proxy, case), []).append(rate)
                cpu.setdefault((proxy, case), []).append(1e6 * used / max(1, sent.requests))
    result: dict[str, Any] = {}
    for proxy in PROXIES:
        medians = {
            case: (statistics.median(rates[(proxy, case)]), statistics.median(cpu[(proxy, case)]))
            for case in cases
        }
        result[proxy] = {case: {"rps": r, "cpu_us": c} for case, (r, c) in medians.items()}
        base_rate, base_cpu = medians["none"]
        shown = [f"{proxy:8} no limit {base_rate:>7.0f} req/s {base_cpu:>6.1f} us CPU/req"]
        for case, label in (("never_1_key", "1 key"), ("never_1000_keys", "1,000 keys")):
            r, c = medians[case]
            rate_change, cpu_change = r / base_rate - 1, c / base_cpu - 1
            shown.append(f"{label} {r:>7.0f} ({rate_change:+.1%}) {c:>6.1f} us ({cpu_change:+.1%})")
        print("; ".join(shown), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of each accuracy run")
    parser.add_argument("--cost-seconds", type=int, default=5, help="length of each cost run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of cost runs")
    parser.add_argument("--cost-only", action="store_true", help="skip the accuracy runs")
    args = parser.parse_args()
    config, ports = bench_config()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="bench-rl-") as tmp,
            running(Path(tmp), config) as pids,
        ):
            print("load average {:.2f} {:.2f} {:.2f}".format(*load_average()))
            if not args.cost_only:
                print(f"accuracy over {args.seconds} s (tolerance: [rate x T, rate x T + burst])")
                accuracy(ports, args.seconds, Path(tmp))
            print(
                f"\ncost ({CONNECTIONS} connections, {args.cost_seconds} s, median of "
                f"{args.rounds} rounds; CPU per request of the proxy's process)"
            )
            cost(ports, pids, args.cost_seconds, args.rounds, Path(tmp))
            print("load average {:.2f} {:.2f} {:.2f}".format(*load_average()))
    except BenchError as exc:
        raise SystemExit(f"bench rate_limits: {exc}") from None


if __name__ == "__main__":
    main()
