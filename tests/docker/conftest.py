"""A Docker engine and the lab on it, once per test session.

`docker_engine`: the engine at DOCKER_HOST (or /var/run/docker.sock) when one answers there;
otherwise a `dockerd` started here (Debian's docker.io) with its own socket, exec root and
pidfile in a temporary directory and `--userland-proxy=false`, stopped by PID at the end. Its
data root (the image cache) is kept in ~/.cache/controlplane-lab/dockerd, so that images,
tagged by the hash of what went into them, are built once and reused by later runs.

`lab`: `controlplane lab up` on that engine under a compose project of its own, and
`controlplane lab down` at the end, also on failure; whatever still carries the project's
label afterwards (containers, networks, volumes) is removed through the docker SDK.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker.errors import DockerException

from tests.docker.lab import LabHandle

ROOT = Path(__file__).resolve().parents[2]
CONTROLPLANE = str(Path(sys.executable).with_name("controlplane"))
PROJECT = "cplab-test"
DATA_ROOT = Path(
    os.environ.get("CP_LAB_DOCKERD_DATA", Path.home() / ".cache" / "controlplane-lab" / "dockerd")
)


def _answers(url: str) -> bool:
    try:
        client = docker.DockerClient(base_url=url, timeout=5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except DockerException:
        return False


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[str]:
    """The URL of a Docker engine: one already running, or a dockerd started for the session."""
    existing = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if _answers(existing):
        yield existing
        return
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    if not Path(dockerd).exists():
        pytest.fail("no dockerd: install Debian's docker.io (make setup does)")
    run = Path(tempfile.mkdtemp(prefix="cpd-", dir="/tmp"))  # short: socket paths are limited
    DATA_ROOT.mkdir(parents=True, exist_ok=True)
    url = f"unix://{run}/docker.sock"
    log = (run / "dockerd.log").open("wb")
    process = subprocess.Popen(
        [
            dockerd,
            "--data-root",
            str(DATA_ROOT),
            "--exec-root",
            str(run / "exec"),
            "--pidfile",
            str(run / "dockerd.pid"),
            "-H",
            url,
            "--userland-proxy=false",
            "--bridge=none",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not _answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = (run / "dockerd.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"dockerd did not start (exit {process.poll()}):\n{tail}")
            time.sleep(0.2)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
        subprocess.run(["umount", "-R", str(run / "exec")], capture_output=True, check=False)
        shutil.rmtree(run, ignore_errors=True)


def _remove_project(client: docker.DockerClient, project: str) -> None:
    """Remove whatever still carries the compose project's label."""
    label = f"com.docker.compose.project={project}"
    for container in client.containers.list(all=True, filters={"label": label}):
        with contextlib.suppress(DockerException):
            container.remove(force=True, v=True)
    for network in client.networks.list(filters={"label": label}):
        with contextlib.suppress(DockerException):
            network.remove()
    for volume in client.volumes.list(filters={"label": label}):
        with contextlib.suppress(DockerException):
            volume.remove(force=True)


@pytest.fixture(scope="session")
def lab(docker_engine: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    """The lab, up and converged, on the session's Docker engine."""
    state = tmp_path_factory.mktemp("lab")
    env = {**os.environ, "DOCKER_HOST": docker_engine}
    client = docker.DockerClient(base_url=docker_engine, timeout=60)
    lab_args = ["--state-dir", str(state), "--project", PROJECT]
    try:
        _remove_project(client, PROJECT)  # what an interrupted earlier run may have left
        began = time.monotonic()
        done = subprocess.run(
            [CONTROLPLANE, "lab", "up", *lab_args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        print(f"\n`controlplane lab up` took {time.monotonic() - began:.1f}s")
        if done.returncode != 0:
            pytest.fail(f"lab up failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        yield LabHandle(client, PROJECT, state, done.stdout)
    finally:
        subprocess.run(
            [CONTROLPLANE, "lab", "down", *lab_args], env=env, cwd=ROOT, capture_output=True
        )
        _remove_project(client, PROJECT)
        client.close()
