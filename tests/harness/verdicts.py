"""The product's CRS verdict service (`controlplane waf-serve`) run for a test: started as a
process on two free consecutive loopback ports (gRPC, then SPOP), ready once both accept
connections, stopped by its PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .ports import free_port

READY_WITHIN = 30.0


def free_port_pair() -> int:
    """A port p on 127.0.0.1 such that p and p + 1 are free right now."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports")


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class VerdictService:
    """`controlplane waf-serve` with `workers` processes; `address` is what a crs `service`
    names."""

    def __init__(self, workers: int = 1, log: Path | None = None) -> None:
        self.port = free_port_pair()
        self.address = f"127.0.0.1:{self.port}"
        self.workers = workers
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> VerdictService:
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115
        command = [sys.executable, "-m", "controlplane.cli", "waf-serve"]
        command += ["--listen", self.address, "--workers", str(self.workers)]
        self.process = subprocess.Popen(command, stdout=out, stderr=out)
        deadline = time.monotonic() + READY_WITHIN
        while not (_accepts(self.port) and _accepts(self.port + 1)):
            if self.process.poll() is not None:
                raise RuntimeError(f"waf-serve exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("waf-serve did not listen in time")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def __enter__(self) -> VerdictService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
