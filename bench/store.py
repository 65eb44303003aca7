"""The stores side by side: commit cost on SQLite and PostgreSQL, and how soon a commit on
one PostgreSQL replica reaches a listener of another (LISTEN/NOTIFY).

    .venv/bin/python bench/store.py [--commits 200] [--clusters 50]

Starts a private PostgreSQL server (Debian's package, fsync on, as a real one) and a SQLite
file (WAL, synchronous=FULL) in one temporary directory. Each commit is a whole config of
`--clusters` clusters, different from the previous one, committed against the head.

- commit: the time `commit()` takes, on each store.
- head(): the time of one `head()` read of an unchanged head (what every API read pays).
- told: from just before `commit()` on store A to the call of a listener subscribed on
  store B, another object with its own connections (a second replica); the next commit
  starts once it was told. On SQLite, B is the same object (SQLite tells only the
  committing process), so that figure is the baseline of a local call.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controlplane.model import Config, parse_config
from controlplane.store import PostgresStore, SQLiteStore, Store
from controlplane.store.postgres import migrate_database
from tests.harness.postgres import running_postgres


def config(clusters: int, round_: int) -> Config:
    return parse_config(
        {
            "clusters": [
                {"name": f"c{i}", "endpoints": [{"address": f"127.0.0.1:{10000 + round_}"}]}
                for i in range(clusters)
            ]
        }
    )


class Told:
    """When a listener last heard each number."""

    def __init__(self) -> None:
        self.at: dict[int, float] = {}
        self._changed = threading.Condition()

    def __call__(self, number: int) -> None:
        now = time.perf_counter()
        with self._changed:
            self.at[number] = now
            self._changed.notify_all()

    def wait(self, number: int) -> float:
        with self._changed:
            if not self._changed.wait_for(lambda: number in self.at, 30):
                raise TimeoutError(f"revision {number} was not told within 30 s")
            return self.at[number]


def measure(writer: Store, follower: Store, commits: int, clusters: int) -> dict[str, list[float]]:
    """Per-commit figures in milliseconds: commit, head(), told."""
    told = Told()
    follower.subscribe(told)
    configs = [config(clusters, i) for i in range(commits + 1)]
    head = writer.head()
    number = head.number if head else 0
    figures: dict[str, list[float]] = {"commit": [], "head()": [], "told": []}
    for i in range(commits):
        began = time.perf_counter()
        revision = writer.commit(configs[i], number or None, "bench")
        committed = time.perf_counter()
        number = revision.number
        heard = told.wait(number)
        read = time.perf_counter()
        writer.head()
        figures["head()"].append((time.perf_counter() - read) * 1000)
        figures["commit"].append((committed - began) * 1000)
        figures["told"].append((heard - began) * 1000)
    return figures


def percentiles(values: list[float]) -> str:
    cuts = statistics.quantiles(values, n=20)
    return f"p50 {statistics.median(values):7.2f}   p95 {cuts[18]:7.2f}   max {max(values):7.2f}"


def report(name: str, figures: dict[str, list[float]]) -> None:
    for what, values in figures.items():
        print(f"  {name:<10} {what:<13} ms  {percentiles(values)}")


def run(commits: int, clusters: int) -> None:
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{commits} commits of {clusters} clusters each, per store\n")
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        sqlite = SQLiteStore(Path(tmp) / "bench.db")
        try:
            sqlite_figures = measure(sqlite, sqlite, commits, clusters)
        finally:
            sqlite.close()
        with running_postgres(durable=True) as server:
            url = server.create_database("bench")
            migrate_database(url)
            writer, follower = PostgresStore(url), PostgresStore(url)
            try:
                postgres_figures = measure(writer, follower, commits, clusters)
            finally:
                writer.close()
                follower.close()
    report("sqlite", sqlite_figures)
    report("postgres", postgres_figures)
    notify = [
        t - c for t, c in zip(postgres_figures["told"], postgres_figures["commit"], strict=True)
    ]
    print(f"  {'postgres':<10} {'told - commit':<13} ms  {percentiles(notify)}")
    print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=200)
    parser.add_argument("--clusters", type=int, default=50)
    args = parser.parse_args()
    run(args.commits, args.clusters)


if __name__ == "__main__":
    main()
