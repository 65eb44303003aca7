"""`controlplane serve` replicas as processes of their own, on one database: started, killed
(SIGKILL, as a crash), stopped by their PID."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from controlplane.proxies.haproxy.manager import stop_left_running

from .ports import free_port


class ServeProcess:
    """One replica: `serve --db DB` on free API and xDS ports, its log in `workdir`."""

    def __init__(
        self,
        workdir: Path,
        name: str,
        db: str,
        tokens: Path,
        config: Path | None = None,
        options: Sequence[str] = (),
    ) -> None:
        """`options`: more of serve's command-line options."""
        self.options = tuple(options)
        self.workdir = workdir / name
        self.name = name
        self.db = db
        self.tokens = tokens
        self.config = config
        self.api_port = free_port()
        self.xds_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def xds(self) -> tuple[str, int]:
        return ("127.0.0.1", self.xds_port)

    @property
    def log_path(self) -> Path:
        return self.workdir / "serve.log"

    def start(self, timeout: float = 60.0) -> ServeProcess:
        """Start the replica; return once its API answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [
            str(Path(sys.executable).with_name("controlplane")),
            "serve",
            "--db", self.db,
            "--migrate",
            "--api", f"127.0.0.1:{self.api_port}",
            "--xds", f"127.0.0.1:{self.xds_port}",
            "--tokens", str(self.tokens),
            "--workdir", str(self.workdir / "run"),
            "--replica", self.name,
        ]  # fmt: skip
        if self.config is not None:
            command += ["--config", str(self.config)]
        command += self.options
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"replica {self.name} exited:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"replica {self.name} did not answer:\n{self.log()}")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing is stopped in order, no lease is ended."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        """SIGTERM to the replica's process group, SIGKILL when it does not end; then the
        local HAProxies it leaves running on purpose (a restart adopts them) are stopped too."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        with contextlib.suppress(FileNotFoundError):
            stop_left_running(self.workdir / "run")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def _answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/v1/config", timeout=1).status_code < 500
        except httpx.HTTPError:
            return False


class Api:
    """A client of one replica's API carrying a token."""

    def __init__(self, replica: ServeProcess, token: str) -> None:
        self.replica = replica
        self.http = httpx.Client(
            base_url=replica.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def status(self) -> dict[str, Any]:
        reply = self.http.get("/v1/status")
        assert reply.status_code == 200, reply.text
        body: dict[str, Any] = reply.json()
        return body

    def wait(self, revision: int, timeout: float = 20.0) -> dict[str, Any]:
        reply = self.http.get("/v1/status/wait", params={"revision": revision, "timeout": timeout})
        assert reply.status_code == 200, reply.text
        body: dict[str, Any] = reply.json()
        return body

    def put_config(self, config: dict[str, Any]) -> int:
        reply = self.http.put("/v1/config", json=config)
        assert reply.status_code == 200, reply.text
        return int(reply.json()["revision"])

    def close(self) -> None:
        self.http.close()
