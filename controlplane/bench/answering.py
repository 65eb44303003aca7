"""A backend that costs the proxy in front of it nothing but the forwarding: a second HAProxy
answering every request 200 itself, pinned to its own CPU."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..proxies.envoy import wait_for
from .load import loopback_only

CONFIG = """global
    nbthread 1
defaults
    mode http
    timeout client 30s
    timeout connect 5s
    timeout server 30s
frontend answer
    bind {host}:{port}
    http-request return status 200 content-type text/plain string ok
"""


def _listening(host: str, port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((host, port)) == 0


@contextmanager
def answering(host: str, port: int, cpu: int = 1) -> Iterator[None]:
    """An HAProxy on `host:port` (loopback only) and CPU `cpu`, answering every request 200
    itself, until the block ends."""
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    with tempfile.TemporaryDirectory(prefix="bench-answering-") as workdir:
        conf = Path(workdir) / "haproxy.cfg"
        conf.write_text(CONFIG.format(host=loopback_only(host), port=port))
        process = subprocess.Popen(
            ["taskset", "-c", str(cpu), binary, "-db", "-f", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(f"the answering HAProxy on {host}:{port}", lambda: _listening(host, port), 10)
            yield
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
