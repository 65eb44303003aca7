"""Free ports for the listeners the lab, the benches and the tests start on this machine:
ports outside the kernel's ephemeral range, so that no outgoing connection can take one
between the moment it is chosen and the moment a proxy binds it."""

import functools
import random
import socket
import threading
from pathlib import Path

EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 10000
HIGHEST = 65000

_handed: set[int] = set()
_lock = threading.Lock()


def ephemeral_range() -> range:
    """The ports the kernel gives outgoing connections (Linux's default when unreadable)."""
    try:
        low, high = (int(x) for x in EPHEMERAL_RANGE.read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing is bound to right now, outside the ephemeral range and
    not handed out before by this process (until all were). Where the ephemeral range leaves
    no room, the operating system picks one."""
    candidates = _candidates()
    with _lock:
        for _ in range(1000 if candidates else 0):
            port = random.choice(candidates)
            if port in _handed:
                continue
            _handed.add(port)
            if _bindable(host, port):
                return port
        _handed.clear()
    return _picked_by_kernel(host)


@functools.cache
def _candidates() -> tuple[int, ...]:
    ephemeral = ephemeral_range()
    return tuple(p for p in range(LOWEST, HIGHEST + 1) if p not in ephemeral)


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _picked_by_kernel(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
