"""Envoy route tables: translate time, size, time to ACK, and requests per second for 10
versus 10,000 prefix routes, as a plain route list versus the translator's matcher tree.

    .venv/bin/python bench/route_scale.py [--seconds 5] [--routes 10000]

Needs wrk. One Envoy (one worker) fed by the real xDS server; routes answer directly (no
backend), and the request asks for the route that comes last in the list.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controlplane.envoy import matcher_tree, translate
from controlplane.model import Config, parse_config
from tests.harness.ports import free_port
from tests.harness.targets_envoy import EnvoyTarget


def config(port: int, count: int) -> Config:
    routes = [
        {
            "match": {"path": {"prefix": f"/p{i:05d}"}},
            "direct_response": {"status": 200, "body": f"{i}"},
        }
        for i in range(count)
    ]
    return parse_config(
        {
            "listeners": [
                {
                    "name": "web",
                    "address": f"127.0.0.1:{port}",
                    "protocol": "http",
                    "virtual_hosts": [{"name": "big", "domains": ["*"], "routes": routes}],
                }
            ]
        }
    )


def wrk(port: int, path: str, seconds: int) -> float:
    out = subprocess.run(
        ["wrk", "-t1", "-c10", f"-d{int(seconds)}s", f"http://127.0.0.1:{port}{path}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(found.group(1)) if found else 0.0


def measure(count: int, tree: bool, seconds: int) -> None:
    saved = matcher_tree.TREE_MIN_ROUTES
    matcher_tree.TREE_MIN_ROUTES = 100 if tree else 10**9
    try:
        port = free_port()
        cfg = config(port, count)
        started = time.perf_counter()
        resources = translate(cfg, "default")
        translated = time.perf_counter() - started
        size = sum(len(b) for items in resources.serialized().values() for b in items.values())
        target = EnvoyTarget("sotw")
        target.start()
        try:
            started = time.perf_counter()
            target.apply(cfg, "default")
            applied = time.perf_counter() - started
            rps = wrk(port, f"/p{count - 1:05d}/x", seconds)
        finally:
            target.stop()
    finally:
        matcher_tree.TREE_MIN_ROUTES = saved
    form = "tree" if tree and count > 100 else "list"
    print(
        f"{count:>6} routes {form:>4}: translate {translated * 1000:8.1f} ms, "
        f"{size / 1024:8.1f} KiB, apply (ACK + warm) {applied * 1000:7.1f} ms, {rps:9.0f} rps"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--routes", type=int, default=10_000)
    args = parser.parse_args()
    measure(10, tree=False, seconds=args.seconds)
    measure(args.routes, tree=False, seconds=args.seconds)
    measure(args.routes, tree=True, seconds=args.seconds)


if __name__ == "__main__":
    main()
