"""`controlplane bench l4-vs-l7` works: through the real proxies it configures, in a tiny run
of a few hundred requests per measurement, it prints the table, writes the JSON and the chart.
The figures are printed, never asserted (the machine is shared)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from controlplane.bench import load
from controlplane.bench.l4_vs_l7 import PATHS, TLS_PATHS
from controlplane.bench.lab import running

pytestmark = [pytest.mark.envoy, pytest.mark.haproxy]


def test_a_tiny_run_measures_every_path_and_writes_json_and_chart(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "controlplane.cli",
            "bench",
            "l4-vs-l7",
            "--requests",
            "200",
            "--idle",
            "50",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    print(done.stdout)
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "l4-vs-l7.json").read_text())
    assert set(data["results"]) == set(PATHS) and set(data["tls"]) == set(TLS_PATHS)
    for path, figures in data["results"].items():
        assert figures["newconn_errors"] == figures["keepalive_errors"] == 0, path
        assert figures["newconn_rate"] > 0 and figures["keepalive_rps"] > 0, path
        assert figures["p50_us"] is not None and figures["idle_bytes_per_connection"] is not None
    assert all(figures["errors"] == 0 for figures in data["tls"].values())
    assert data["settings"]["generator"] == "python"
    assert "article L4" in done.stdout and "HAProxy tcp" in done.stdout
    assert (tmp_path / "l4-vs-l7.png").read_bytes().startswith(b"\x89PNG")


def test_wrk_reports_are_read_for_rates_and_latency(tmp_path: Path) -> None:
    with running(tmp_path) as lab:
        for path in ("direct", "haproxy-http"):
            url = f"http://127.0.0.1:{lab.ports[path]}/"
            kept = load.wrk(url, 4, 1, latency=True)
            fresh = load.wrk(url, 4, 1, close=True)
            print(f"{path}: {kept.rate:.0f} req/s p50 {kept.p50_us} us; {fresh.rate:.0f} conn/s")
            assert kept.requests > 0 and kept.errors == 0
            assert kept.p50_us is not None and kept.p99_us is not None
            assert fresh.requests > 0 and fresh.errors == 0


def test_the_bench_sends_only_to_loopback() -> None:
    with pytest.raises(ValueError, match="not a loopback address"):
        load.keepalive("10.0.0.1", 80, 1)
