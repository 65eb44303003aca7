"""What compiling a revision costs after a small write, beside compiling it from scratch.

    .venv/bin/python bench/compile.py [--rounds 10]

The config is xds_fanout's serve config (1,000 clusters of two endpoints, one listener of 100
virtual hosts of 100 routes). Each round makes three writes as `serve` makes them (the new
plain data validated against the head, so unchanged parts are the head's objects): one
cluster's endpoints changed, one cluster's connect timeout changed, one route removed. Each
is compiled for Envoy (`translate`, which reuses what it made of unchanged parts) and rendered
for HAProxy (`render`), and, as the baseline in the same run, compiled for Envoy from a config
parsed afresh (no part shared: everything translated again). Medians of the rounds, in ms of
this process's CPU time (`time.process_time`), with the load average.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from xds_fanout import serve_config

from controlplane.envoy import translate
from controlplane.haproxy.render import render
from controlplane.model import Config, parse_config
from controlplane.model.parts import PARTS


def endpoints_moved(data: dict[str, Any], n: int) -> None:
    data["clusters"][n % 1000]["endpoints"][0]["address"] = f"127.0.0.1:{40000 + n}"


def timeout_changed(data: dict[str, Any], n: int) -> None:
    data["clusters"][n % 1000]["connect_timeout"] = f"{2000 + n}ms"


def route_removed(data: dict[str, Any], n: int) -> None:
    data["listeners"][0]["virtual_hosts"][n % 100]["routes"].pop()


WRITES: list[tuple[str, Callable[[dict[str, Any], int], None]]] = [
    ("endpoints of one cluster", endpoints_moved),
    ("connect timeout of one cluster", timeout_changed),
    ("one route removed", route_removed),
]


def cpu_ms(work: Callable[[], object]) -> float:
    began = time.process_time()
    work()
    return (time.process_time() - began) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    head: Config = parse_config(serve_config())
    group = head.group_names()[0]
    translate(head, group)
    print(f"load average {os.getloadavg()[0]:.1f}; medians of {args.rounds} rounds, CPU ms")
    print(f"{'write':<32} {'Envoy, reusing':>15} {'Envoy, afresh':>14} {'HAProxy':>9}")
    for label, write in WRITES:
        reusing: list[float] = []
        afresh: list[float] = []
        haproxy: list[float] = []
        for n in range(args.rounds):
            data = copy.deepcopy(PARTS.plain(head))
            write(data, n)
            changed = parse_config(data, like=head)
            fresh = parse_config(copy.deepcopy(data))
            reusing.append(cpu_ms(lambda c=changed: translate(c, group)))  # type: ignore[misc]
            afresh.append(cpu_ms(lambda c=fresh: translate(c, group)))  # type: ignore[misc]
            haproxy.append(cpu_ms(lambda c=changed: render(c, group)))  # type: ignore[misc]
            head = changed
        print(
            f"{label:<32} {statistics.median(reusing):>15.1f} "
            f"{statistics.median(afresh):>14.1f} {statistics.median(haproxy):>9.1f}"
        )
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
