"""Load generators: `wrk` (Debian's) for rates and latency, and a bounded Python client for
small runs and for holding idle connections. Both send `GET /` and read small answers; only
to 127.0.0.0/8."""

from __future__ import annotations

import functools
import ipaddress
import re
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
CLOSING = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"


def loopback_only(host: str) -> str:
    """`host` if it is a 127.0.0.0/8 address; ValueError otherwise."""
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"{host} is not a loopback address: the bench sends only to 127.0.0.0/8")
    return host


@dataclass(frozen=True)
class Run:
    """What one load run measured: requests answered, errors, seconds, latency percentiles
    (None when not measured)."""

    requests: int
    errors: int
    seconds: float
    p50_us: float | None = None
    p99_us: float | None = None

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


# -- wrk ------------------------------------------------------------------------------------

_UNITS = {"us": 1.0, "ms": 1_000.0, "s": 1_000_000.0, "m": 60_000_000.0}
_DONE = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b")
_PERCENTILE = re.compile(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", re.MULTILINE)
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def wrk_binary() -> str | None:
    return shutil.which("wrk")


def parse_wrk(text: str) -> Run:
    """A wrk report as a Run (ValueError when it is not one). Read errors on closed
    connections are counted apart from failures: with `Connection: close` they are how each
    connection ends."""
    done = _DONE.search(text)
    if done is None:
        raise ValueError(f"not a wrk report: {text[-300:]!r}")
    seconds = float(done.group(2)) * _UNITS[done.group(3)] / 1_000_000
    errors = 0
    found = _SOCKET_ERRORS.search(text)
    if found:
        errors += int(found.group(1)) + int(found.group(3)) + int(found.group(4))
    non_2xx = _NON_2XX.search(text)
    if non_2xx:
        errors += int(non_2xx.group(1))
    percentiles = {
        m.group(1): float(m.group(2)) * _UNITS[m.group(3)] for m in _PERCENTILE.finditer(text)
    }
    return Run(int(done.group(1)), errors, seconds, percentiles.get("50"), percentiles.get("99"))


def wrk(
    url: str, connections: int, seconds: int, *, close: bool = False, latency: bool = False
) -> Run:
    """`wrk -t1` against `url` for `seconds` with `connections` kept open (each request on a
    new connection with `close`)."""
    binary = wrk_binary()
    if binary is None:
        raise FileNotFoundError("wrk is not installed (apt-get install wrk)")
    command = [binary, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s"]
    if close:
        command += ["-H", "Connection: close"]
    if latency:
        command.append("--latency")
    done = subprocess.run(
        [*command, url], capture_output=True, text=True, timeout=seconds + 30, check=False
    )
    return parse_wrk(done.stdout)


# -- the Python client ----------------------------------------------------------------------


@functools.cache
def _tls_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the bench's own self-signed certificate
    return context


def _connect(host: str, port: int, tls: bool) -> socket.socket:
    sock = socket.create_connection((loopback_only(host), port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return _tls_context().wrap_socket(sock) if tls else sock


def _read_answer(sock: socket.socket, buffer: bytes = b"") -> bytes:
    """Read one small HTTP answer (headers and a Content-Length body); the bytes after it."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before an answer")
        buffer += chunk
    head, rest = buffer.split(b"\r\n\r\n", 1)
    if not head.startswith(b"HTTP/1.1 200"):
        raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
    found = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    length = int(found.group(1)) if found else 0
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the body")
        rest += chunk
    return rest[length:]


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def keepalive(host: str, port: int, count: int, tls: bool = False) -> Run:
    """`count` sequential requests over one connection, each timed."""
    samples: list[float] = []
    errors = 0
    began = time.perf_counter()
    sock = _connect(host, port, tls)
    try:
        rest = b""
        for _ in range(count):
            sent = time.perf_counter()
            try:
                sock.sendall(REQUEST)
                rest = _read_answer(sock, rest)
            except OSError:
                errors += 1
                sock.close()
                sock, rest = _connect(host, port, tls), b""
                continue
            samples.append((time.perf_counter() - sent) * 1_000_000)
    finally:
        sock.close()
    seconds = time.perf_counter() - began
    if not samples:
        return Run(0, errors, seconds)
    return Run(len(samples), errors, seconds, _percentile(samples, 0.5), _percentile(samples, 0.99))


def new_connections(host: str, port: int, count: int, tls: bool = False) -> Run:
    """`count` requests, each on a connection of its own (closed by the answer)."""
    errors = 0
    began = time.perf_counter()
    for _ in range(count):
        try:
            with _connect(host, port, tls) as sock:
                sock.sendall(CLOSING)
                _read_answer(sock)
        except OSError:
            errors += 1
    return Run(count - errors, errors, time.perf_counter() - began)


def idle_connections(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` connections, each having had one answered request, left open and idle."""
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = _connect(host, port, False)
            held.append(sock)
            sock.sendall(REQUEST)
            _read_answer(sock)
    except BaseException:
        for sock in held:
            sock.close()
        raise
    return held
