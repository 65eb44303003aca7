"""`controlplane haproxy stop`: what `serve` leaves running when it stops can be stopped.

A real server (`start_server`) with a local HAProxy for group `edge`; when the server stops
the HAProxy keeps serving (as documented), and the command, given serve's `--workdir`, stops
it and says so; a second run finds nothing; a directory that does not exist is an error.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from controlplane.proxies.haproxy.manager import stop_left_running
from controlplane.serve import ServeOptions, start_server
from tests.harness.backends import BackendFleet, BackendSpec
from tests.harness.clients import http
from tests.harness.envoy import wait_for
from tests.harness.loop_thread import LoopThread
from tests.harness.ports import free_port

pytestmark = [pytest.mark.haproxy, pytest.mark.timeout(120)]

HOST = "127.0.0.1"
COMMAND = str(Path(sys.executable).with_name("controlplane"))


def stop_command(workdir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COMMAND, "haproxy", "stop", "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def serves(port: int) -> bool:
    try:
        return http(HOST, port, "/").backend == "web"
    except OSError:
        return False


def refuses(port: int) -> bool:
    try:
        http(HOST, port, "/")
    except OSError:
        return True
    return False


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    """serve's --workdir; whatever HAProxy is still left running there at the end is stopped
    (by the pid its manager recorded), also when the test fails."""
    yield tmp_path / "run"
    stop_left_running(tmp_path / "run")


def seed_config(path: Path, port: int, backend: str) -> Path:
    listener = {
        "name": "edge",
        "address": f"{HOST}:{port}",
        "protocol": "http",
        "virtual_hosts": [
            {"name": "all", "domains": ["*"], "routes": [{"backends": [{"cluster": "web"}]}]}
        ],
    }
    path.write_text(
        yaml.safe_dump(
            {
                "listeners": [listener],
                "clusters": [{"name": "web", "endpoints": [{"address": backend}]}],
                "node_groups": [{"name": "edge", "listeners": ["edge"]}],
            }
        )
    )
    return path


def test_haproxy_stop_ends_what_serve_left_running(tmp_path: Path, workdir: Path) -> None:
    port = free_port()
    thread = LoopThread()
    try:
        with BackendFleet() as backends:
            web = backends.start(BackendSpec("web"))
            options = ServeOptions(
                db=tmp_path / "store.db",
                config=seed_config(tmp_path / "config.yaml", port, web.address),
                api="127.0.0.1:0",
                xds="127.0.0.1:0",
                insecure_local=True,
                haproxy_groups=("edge",),
                workdir=workdir,
            )
            running = thread.run(start_server(options))
            try:
                wait_for("HAProxy to serve", lambda: serves(port), 15)
            finally:
                thread.run(running.stop(True))
            assert serves(port), "serve left its HAProxy serving"

            done = stop_command(workdir)
            assert done.returncode == 0, done.stderr
            [line] = done.stdout.splitlines()
            assert line.startswith("stopped HAProxy (master pid ")
            assert line.endswith(f"of {(workdir / 'haproxy-edge').resolve()}")
            assert refuses(port)
    finally:
        thread.close()

    again = stop_command(workdir)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"no HAProxy left running from {workdir}"


def test_haproxy_stop_refuses_a_directory_that_does_not_exist(tmp_path: Path) -> None:
    done = stop_command(tmp_path / "missing")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip() == f"--workdir {tmp_path / 'missing'}: no such directory"
