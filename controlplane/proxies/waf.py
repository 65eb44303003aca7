"""The CRS verdict service run beside local proxies: `controlplane waf-serve` as a process,
ready once its gRPC (Envoy) and SPOP (HAProxy) ports both accept connections, stopped by its
PID (SIGTERM, then SIGKILL), also when it does not come up."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ..model.types import split_address

READY_WITHIN = 30.0


class VerdictServiceError(RuntimeError):
    """The verdict service did not start."""


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class VerdictServiceProcess:
    """`controlplane waf-serve --listen <listen> --workers <workers>`; `address` is what a crs
    `service` names (SPOP on the next port)."""

    def __init__(self, listen: str, workers: int = 2, log: Path | None = None) -> None:
        self.address = listen
        self.host, self.port = split_address(listen)
        self.workers = workers
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> VerdictServiceProcess:
        """Start the service; returns once both ports accept connections."""
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115
        command = [sys.executable, "-m", "controlplane.cli", "waf-serve"]
        command += ["--listen", self.address, "--workers", str(self.workers)]
        try:
            self.process = subprocess.Popen(command, stdout=out, stderr=out)
        finally:
            if out is not subprocess.DEVNULL:
                out.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + READY_WITHIN
        while not (_accepts(self.host, self.port) and _accepts(self.host, self.port + 1)):
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise VerdictServiceError(f"waf-serve on {self.address} exited with {code}")
            if time.monotonic() > deadline:
                self.stop()
                raise VerdictServiceError(f"waf-serve did not listen on {self.address} in time")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Stop the service by its PID and wait for it."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()

    def __enter__(self) -> VerdictServiceProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
