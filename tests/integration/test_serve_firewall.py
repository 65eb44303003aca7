"""`serve --waf`: the server starts the CRS verdict service for its local proxies, a local
HAProxy running examples/firewall.yaml refuses an SQL injection and lets a benign request
through, and the service stops (by its PID) with the server. `make run`'s config is the
quickstart with the firewall example's shop listener."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.demo import demo_config
from controlplane.model import dump_yaml
from controlplane.serve import Running, ServeOptions, start_server
from tests.firewall.corpus import example_config
from tests.harness.backends import BackendFleet, BackendSpec
from tests.harness.clients import http
from tests.harness.envoy import wait_for
from tests.harness.loop_thread import LoopThread
from tests.harness.ports import free_port
from tests.harness.verdicts import free_port_pair

pytestmark = [pytest.mark.haproxy, pytest.mark.timeout(120)]
HAPROXY_HOST = "127.0.0.2"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Running, int]]:
    tmp = tmp_path_factory.mktemp("serve-waf")
    port, waf = free_port(), f"127.0.0.1:{free_port_pair()}"
    with BackendFleet() as fleet:
        app = fleet.start(BackendSpec(name="app")).address
        listen = {"shop": f"127.0.0.1:{port}", "db": f"127.0.0.1:{free_port()}"}
        (tmp / "lb.yaml").write_text(dump_yaml(example_config(listen, app, waf)))
        options = ServeOptions(
            db=tmp / "store.db",
            config=tmp / "lb.yaml",
            api="127.0.0.1:0",
            xds="127.0.0.1:0",
            insecure_local=True,
            targets=("haproxy",),
            haproxy_groups=("default",),
            haproxy_bind=HAPROXY_HOST,
            workdir=tmp / "run",
            waf=waf,
            waf_workers=1,
        )
        thread = LoopThread()
        try:
            running = thread.run(start_server(options))
            try:
                wait_for("the local HAProxy to run the head", lambda: _runs_head(running), 20)
                yield running, port
            finally:
                thread.run(running.stop())
        finally:
            thread.close()


def _runs_head(running: Running) -> bool:
    head = running.store.head()
    records = running.status.proxies()
    return head is not None and bool(records) and all(r.runs(head.number) for r in records)


def test_the_local_haproxy_asks_the_verdict_service_serve_started(
    served: tuple[Running, int],
) -> None:
    running, port = served
    assert running.verdicts is not None and running.verdicts.pid is not None
    attack = http(HAPROXY_HOST, port, "/products?id=1'%20OR%20'1'='1", timeout=5)
    assert attack.status == 403 and attack.text == "blocked by the firewall\n"
    assert http(HAPROXY_HOST, port, "/products?id=1", timeout=5).backend == "app"


def test_the_verdict_service_stops_with_the_server(tmp_path: Path) -> None:
    options = ServeOptions(
        db=tmp_path / "store.db",
        api="127.0.0.1:0",
        xds="127.0.0.1:0",
        insecure_local=True,
        workdir=tmp_path / "run",
        waf=f"127.0.0.1:{free_port_pair()}",
        waf_workers=1,
    )
    thread = LoopThread()
    try:
        running = thread.run(start_server(options))
        assert running.verdicts is not None
        pid = running.verdicts.pid
        assert pid is not None
        thread.run(running.stop())
    finally:
        thread.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["waf-serve", "--listen", "nowhere"], "--listen: expected 'host:port'"),
        (["waf-serve", "--crs-dir", "/nonexistent"], "--crs-dir: /nonexistent is not a directory"),
        (["serve", "--db", "/tmp/x.db", "--waf", "1.2.3.4:99999"], "--waf '1.2.3.4:99999'"),
    ],
)
def test_bad_verdict_service_options_are_one_line_and_exit_2(
    arguments: list[str], message: str, tmp_path: Path
) -> None:
    if arguments[0] == "serve":
        arguments = ["serve", "--db", str(tmp_path / "x.db"), *arguments[3:]]
        arguments += ["--workdir", str(tmp_path / "run"), "--api", "127.0.0.1:0"]
        arguments += ["--xds", "127.0.0.1:0", "--insecure-local"]
    done = subprocess.run(
        [sys.executable, "-m", "controlplane.cli", *arguments], capture_output=True, text=True
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr


def test_make_run_serves_the_quickstart_and_the_firewall_example() -> None:
    config = demo_config()
    assert [x.name for x in config.listeners] == ["web", "shop"]
    shop = config.listeners[1]
    assert shop.firewall is not None and shop.firewall.crs is not None
    assert shop.firewall.crs.service == "127.0.0.1:9470"
