"""Backends that say who they are: HTTP/1.1, WebSocket, gRPC, TCP and TLS servers on 127.0.0.1.

Every backend answers with its name, so a client behind a proxy can tell which backend served it:

- ``http1``: any method and path answers ``status`` with header ``x-backend: <name>`` and a JSON
  body ``{"backend", "method", "path", "headers", "client", "body_length", "connections",
  "peak_connections"}`` (+ ``proxy_source`` when it expects a PROXY protocol header), after
  ``delay`` seconds; ``connections`` is how many connections it has open, ``peak_connections``
  the most it ever had at once. Keep-alive, request bodies (Content-Length, chunked).
- ``websocket``: an ``http1`` backend that also accepts WebSocket upgrades and answers each text
  message ``m`` with ``"<name>:m"``.
- ``http2``: a gRPC server (h2c) whose every unary method answers the name as raw bytes, with
  trailing metadata ``x-backend: <name>``, after ``delay`` seconds (32 calls at once at most).
- ``tcp``: writes ``<name>\\n`` (``<name> proxy=<ip:port>\\n`` behind PROXY protocol) on connect,
  then echoes what it receives.
- ``tls``: ``tcp`` behind TLS with one of the certificates in ``tests/certs``.

All stream backends share one asyncio loop on one background thread; gRPC backends run on
grpcio's own small thread pool. A ``BackendFleet`` owns them and stops them all when it closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import socket
import ssl
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, Literal, TypeVar

import grpc
import pytest
from websockets.frames import Frame, Opcode
from websockets.http11 import Request as WsRequest
from websockets.protocol import OPEN
from websockets.server import ServerProtocol

CERTS_DIR = Path(__file__).resolve().parent.parent / "certs"
LOOPBACK = "127.0.0.1"

BackendKind = Literal["http1", "websocket", "http2", "tcp", "tls"]

_T = TypeVar("_T")
_START_TIMEOUT = 5.0
_PROXY_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def cert_files(name: str) -> tuple[Path, Path]:
    """Certificate and key files of a test certificate, e.g. ``cert_files("example.com")``."""
    return CERTS_DIR / f"{name}.crt", CERTS_DIR / f"{name}.key"


@dataclass(frozen=True)
class BackendSpec:
    """What a backend is: its name, what it speaks and how it answers.

    ``cert`` names a certificate in tests/certs: required for ``tls``; on ``http1`` and
    ``websocket`` it makes the backend speak HTTPS. ``headers`` are extra response headers of
    ``http1``/``websocket``; ``delay`` the seconds an ``http1`` or ``http2`` backend takes to
    answer. ``port`` pins the port (to restart a stopped backend where it was); ``None`` lets the
    operating system pick a free one.
    """

    name: str
    kind: BackendKind = "http1"
    status: int = 200
    proxy_protocol: bool = False
    cert: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    port: int | None = None
    delay: float = 0.0

    def __post_init__(self) -> None:
        if self.kind == "tls" and self.cert is None:
            raise ValueError(f"backend {self.name}: a tls backend needs a cert")
        if self.proxy_protocol and self.kind not in ("http1", "websocket", "tcp"):
            raise ValueError(f"backend {self.name}: PROXY protocol only on http1/websocket/tcp")
        if self.cert is not None and self.kind in ("http2", "tcp"):
            raise ValueError(f"backend {self.name}: no TLS on {self.kind} backends")


@dataclass
class Backend:
    """A running backend. ``status`` may be changed while it runs (e.g. to fail health checks).
    ``received`` counts the HTTP requests and gRPC calls it has been sent."""

    spec: BackendSpec
    port: int
    status: int
    host: str = LOOPBACK
    received: int = 0
    connections: int = 0
    """Connections open now."""
    peak_connections: int = 0
    """The most connections it had open at once."""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def address(self) -> str:
        """``"127.0.0.1:PORT"``."""
        return f"{self.host}:{self.port}"


class ProxyHeaderError(Exception):
    """The connection did not start with a valid PROXY protocol header."""


class BackendFleet:
    """Backends started on demand and all stopped by ``close()`` (or leaving the ``with`` block)."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="backends", daemon=True)
        self._thread.start()
        self._backends: dict[str, Backend] = {}
        self._stoppers: dict[str, Callable[[], None]] = {}

    def __enter__(self) -> BackendFleet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __getitem__(self, name: str) -> Backend:
        return self._backends[name]

    def start(self, spec: BackendSpec) -> Backend:
        """Start one backend; returns once it accepts connections."""
        if spec.name in self._backends:
            raise ValueError(f"backend {spec.name} already runs")
        if spec.kind == "http2":
            backend, stop = _start_grpc(spec)
        else:
            backend, stop_on_loop = self._on_loop(_start_stream(spec))

            def stop() -> None:
                self._on_loop(stop_on_loop())

        self._backends[spec.name] = backend
        self._stoppers[spec.name] = stop
        return backend

    def start_all(self, specs: Iterable[BackendSpec]) -> dict[str, Backend]:
        """Start several backends; returns them by name."""
        return {spec.name: self.start(spec) for spec in specs}

    def stop(self, name: str) -> None:
        """Stop one backend: its port refuses connections and its open connections are closed."""
        stop = self._stoppers.pop(name)
        del self._backends[name]
        stop()

    def close(self) -> None:
        """Stop every backend and the loop thread. Safe to call twice."""
        try:
            errors: list[Exception] = []
            for name in list(self._stoppers):
                try:
                    self.stop(name)
                except Exception as error:  # stop the others all the same
                    errors.append(error)
            if errors:
                raise errors[0]
        finally:
            if self._thread.is_alive():
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(_START_TIMEOUT)
            if not self._loop.is_running() and not self._loop.is_closed():
                self._loop.close()

    def _on_loop(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(_START_TIMEOUT)


@pytest.fixture
def backend_fleet() -> Iterator[BackendFleet]:
    """A fleet whose backends are stopped when the test ends, also on failure."""
    with BackendFleet() as fleet:
        yield fleet


# --- stream backends (http1, websocket, tcp, tls) on the shared loop ---------------------------

_Serve = Callable[[Backend, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
_QUIET_ERRORS = (
    ConnectionError,
    asyncio.IncompleteReadError,
    asyncio.LimitOverrunError,
    ProxyHeaderError,
    ssl.SSLError,
    UnicodeDecodeError,
    ValueError,
)


def _still_open(writers: Iterable[asyncio.StreamWriter]) -> int:
    """How many of `writers`' connections their peer has not closed: a proxy that closed one
    and opened another at once has one open, even before this loop reads the first's EOF."""
    count = 0
    for writer in writers:
        fd = writer.get_extra_info("socket").fileno()
        if fd < 0:
            continue
        with socket.socket(fileno=os.dup(fd)) as peer:
            try:
                closed = peer.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
            except BlockingIOError:
                closed = False
            except OSError:
                closed = True
        count += not closed
    return count


async def _start_stream(
    spec: BackendSpec,
) -> tuple[Backend, Callable[[], Coroutine[Any, Any, None]]]:
    serve: _Serve = _serve_http if spec.kind in ("http1", "websocket") else _serve_stream
    tls = _server_tls_context(spec.cert) if spec.cert else None
    connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
    backend: Backend | None = None

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None and backend is not None
        connections[task] = writer
        backend.connections = _still_open(connections.values())
        backend.peak_connections = max(backend.peak_connections, backend.connections)
        try:
            await serve(backend, reader, writer)
        except _QUIET_ERRORS:
            pass
        finally:
            connections.pop(task, None)
            backend.connections = len(connections)
            writer.close()
            with contextlib.suppress(*_QUIET_ERRORS):  # retrieves the connection's last error
                await writer.wait_closed()

    server = await asyncio.start_server(on_connect, LOOPBACK, spec.port or 0, ssl=tls)
    backend = Backend(spec=spec, port=server.sockets[0].getsockname()[1], status=spec.status)

    async def stop() -> None:
        server.close()
        # Closing the sockets ends the handlers (their reads see EOF); cancelling them instead
        # makes Python 3.11's asyncio log a spurious CancelledError per connection.
        handlers = list(connections)
        for writer in connections.values():
            writer.close()
        if handlers:
            await asyncio.wait(handlers, timeout=_START_TIMEOUT)
        await server.wait_closed()

    return backend, stop


def _server_tls_context(cert: str) -> ssl.SSLContext:
    crt, key = cert_files(cert)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(crt, key)
    return context


async def _serve_stream(
    backend: Backend, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    greeting = backend.name
    if backend.spec.proxy_protocol:
        greeting += f" proxy={await read_proxy_header(reader)}"
    writer.write(greeting.encode() + b"\n")
    await writer.drain()
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


async def _serve_http(
    backend: Backend, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    proxy_source = await read_proxy_header(reader) if backend.spec.proxy_protocol else None
    client = writer.get_extra_info("peername")[0]
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return
        method, target, version, headers = _parse_head(head)
        if backend.spec.kind == "websocket" and "websocket" in headers.get("upgrade", "").lower():
            await _serve_websocket(backend, head, reader, writer)
            return
        if "100-continue" in headers.get("expect", "").lower():
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body_length = await _read_body(reader, headers)
        backend.received += 1
        if backend.spec.delay:
            await asyncio.sleep(backend.spec.delay)
        report: dict[str, Any] = {
            "backend": backend.name,
            "method": method,
            "path": target,
            "headers": headers,
            "client": client,
            "body_length": body_length,
            "connections": backend.connections,
            "peak_connections": backend.peak_connections,
        }
        if backend.spec.proxy_protocol:
            report["proxy_source"] = proxy_source
        connection = headers.get("connection", "").lower()
        keep_alive = "close" not in connection and (
            version == "HTTP/1.1" or "keep-alive" in connection
        )
        writer.write(_response(backend, method, report, keep_alive))
        await writer.drain()
        if not keep_alive:
            return


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    """Request line and headers; repeated headers are joined with ", "."""
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        key, value = name.strip().lower(), value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return method, target, version, headers


async def _read_body(reader: asyncio.StreamReader, headers: Mapping[str, str]) -> int:
    """Reads and discards the request body; returns its length."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        total = 0
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            await reader.readexactly(size + 2)
            total += size
        while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
            pass
        return total
    length = int(headers.get("content-length", "0"))
    await reader.readexactly(length)
    return length


def _response(backend: Backend, method: str, report: dict[str, Any], keep_alive: bool) -> bytes:
    status = backend.status
    body = json.dumps(report).encode()
    reason = ""
    with contextlib.suppress(ValueError):
        reason = HTTPStatus(status).phrase
    head = [f"HTTP/1.1 {status} {reason}", f"x-backend: {backend.name}"]
    head += [f"{name}: {value}" for name, value in backend.spec.headers.items()]
    if not keep_alive:
        head.append("connection: close")
    if status >= 200 and status not in (204, 304):
        head += ["content-type: application/json", f"content-length: {len(body)}"]
    if method == "HEAD" or status < 200 or status in (204, 304):
        body = b""
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


async def _serve_websocket(
    backend: Backend, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    protocol = ServerProtocol()
    protocol.receive_data(head)
    [request] = protocol.events_received()
    assert isinstance(request, WsRequest)
    response = protocol.accept(request)
    response.headers["x-backend"] = backend.name
    protocol.send_response(response)
    await _flush(protocol, writer)
    text: list[bytes] | None = None  # fragments of the text message being received
    while protocol.state is OPEN:
        data = await reader.read(65536)
        if data:
            protocol.receive_data(data)
        else:
            protocol.receive_eof()
        for event in protocol.events_received():
            if not isinstance(event, Frame):
                continue
            if event.opcode is Opcode.TEXT:
                text = [bytes(event.data)]
            elif event.opcode is Opcode.CONT and text is not None:
                text.append(bytes(event.data))
            else:
                continue
            if event.fin:
                message = b"".join(text).decode()
                text = None
                protocol.send_text(f"{backend.name}:{message}".encode())
        await _flush(protocol, writer)
        if not data:
            return


async def _flush(protocol: ServerProtocol, writer: asyncio.StreamWriter) -> None:
    for data in protocol.data_to_send():
        if data:
            writer.write(data)
        elif writer.can_write_eof():
            writer.write_eof()
    await writer.drain()


async def read_proxy_header(reader: asyncio.StreamReader) -> str | None:
    """Reads a PROXY protocol v1 or v2 header; returns the source ``ip:port`` it carries.

    ``None`` for headers that carry no address (v1 ``UNKNOWN``, v2 ``LOCAL``, e.g. health checks).
    """
    start = await reader.readexactly(12)
    if start.startswith(b"PROXY "):
        line = (start + await reader.readuntil(b"\r\n")).decode("ascii").rstrip("\r\n")
        fields = line.split(" ")
        if fields[1] == "UNKNOWN":
            return None
        if len(fields) != 6 or fields[1] not in ("TCP4", "TCP6"):
            raise ProxyHeaderError(line)
        return _source(fields[2], int(fields[4]))
    if start != _PROXY_V2_SIGNATURE:
        raise ProxyHeaderError(repr(start))
    version_command, family, length = struct.unpack("!BBH", await reader.readexactly(4))
    addresses = await reader.readexactly(length)
    if version_command >> 4 != 2:
        raise ProxyHeaderError(f"PROXY v2 version byte {version_command:#x}")
    if version_command & 0x0F == 0:  # LOCAL
        return None
    if family >> 4 == 1:
        return _source(str(ipaddress.IPv4Address(addresses[:4])), _port(addresses[8:10]))
    if family >> 4 == 2:
        return _source(str(ipaddress.IPv6Address(addresses[:16])), _port(addresses[32:34]))
    return None


def _port(data: bytes) -> int:
    return int(struct.unpack("!H", data)[0])


def _source(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


# --- gRPC backends: grpcio's own server threads -------------------------------------------------


class _NameEveryMethod(grpc.GenericRpcHandler):
    """Any unary method answers the backend's name as raw bytes."""

    def __init__(self, name: str) -> None:
        self._name = name
        self.backend: Backend | None = None

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        def answer(request: bytes, context: grpc.ServicerContext) -> bytes:
            if self.backend is not None:
                self.backend.received += 1
                if self.backend.spec.delay:
                    time.sleep(self.backend.spec.delay)
            context.set_trailing_metadata((("x-backend", self._name),))
            return self._name.encode()

        return grpc.unary_unary_rpc_method_handler(answer)


def _start_grpc(spec: BackendSpec) -> tuple[Backend, Callable[[], None]]:
    handler = _NameEveryMethod(spec.name)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix=f"grpc-{spec.name}"),
        handlers=[handler],
        options=[("grpc.so_reuseport", 0)],
    )
    port = server.add_insecure_port(f"{LOOPBACK}:{spec.port or 0}")
    if port == 0:
        raise OSError(f"backend {spec.name}: cannot bind {LOOPBACK}:{spec.port}")
    server.start()

    def stop() -> None:
        server.stop(grace=None).wait(_START_TIMEOUT)

    handler.backend = Backend(spec=spec, port=port, status=spec.status)
    return handler.backend, stop
