"""The product's CRS verdict service (`controlplane waf-serve`) for a test, on two free
consecutive loopback ports (gRPC, then SPOP); started and stopped by the product's own
runner (`controlplane.proxies.waf`)."""

from __future__ import annotations

import socket
from pathlib import Path

from controlplane.proxies.waf import VerdictServiceProcess

from .ports import free_port


def free_port_pair() -> int:
    """A port p on 127.0.0.1 such that p and p + 1 are free right now."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as probe:
            # as the service's servers bind: a port some closed connection left in TIME-WAIT
            # is free to them
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports")


class VerdictService(VerdictServiceProcess):
    """The verdict service on free ports."""

    def __init__(self, workers: int = 1, log: Path | None = None) -> None:
        super().__init__(f"127.0.0.1:{free_port_pair()}", workers, log)
