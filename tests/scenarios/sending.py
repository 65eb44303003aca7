"""Sending a step's requests through a proxy and recording what the client observed."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from websockets.exceptions import WebSocketException

from tests.harness import clients
from tests.harness.clients import CookieJar, Headers, HttpSession, PeerCert, Response

from .format import Step

LOOPBACK = "127.0.0.1"
TIMEOUT = 5.0
CLIENT_ERRORS = (OSError, http.client.HTTPException, WebSocketException, ssl.SSLError)


@dataclass(frozen=True)
class Observation:
    """What one request showed the client. `error` is set when no answer came at all."""

    backend: str | None = None
    status: int | None = None
    headers: Headers | None = None
    upstream: dict[str, Any] | None = None
    body: str | None = None
    certificate: PeerCert | None = None
    proxy_source: str | None = None
    upgraded: bool | None = None
    error: str | None = None

    def summary(self) -> str:
        """A short description for failure messages."""
        if self.error is not None:
            return f"error {self.error!r}"
        parts = [f"status {self.status}"] if self.status is not None else []
        parts.append(f"backend {self.backend!r}")
        if self.upgraded is not None:
            parts.append(f"upgraded {self.upgraded}")
        if self.certificate is not None:
            parts.append(f"certificate {self.certificate.common_name!r}")
        if self.proxy_source is not None:
            parts.append(f"proxy_source {self.proxy_source!r}")
        return ", ".join(parts)


@dataclass(frozen=True)
class ListenerAt:
    """Where a listener of the running config accepts connections, and what it speaks."""

    port: int
    protocol: str


def send(step: Step, listener: ListenerAt) -> list[Observation]:
    """Sends the step's requests; one observation per request, in order (client by client)."""
    if step.kind == "http":
        return _clients(step, listener, _http) if step.clients > 1 else _http(step, listener)
    if step.kind == "websocket":
        return [_websocket(step, listener) for _ in range(step.count)]
    if step.kind == "grpc":
        return _clients(step, listener, _grpc) if step.clients > 1 else _grpc(step, listener)
    with contextlib.ExitStack() as held:
        return [
            _stream(step, listener, held if step.hold_open else None) for _ in range(step.count)
        ]


def _from_response(response: Response) -> Observation:
    upstream = None
    try:
        report = json.loads(response.body)
    except ValueError:
        report = None
    if isinstance(report, dict) and isinstance(report.get("backend"), str):
        upstream = report
    return Observation(
        backend=response.backend,
        status=response.status,
        headers=response.headers,
        upstream=upstream,
        body=response.text,
        certificate=response.peer_cert,
        proxy_source=upstream.get("proxy_source") if upstream else None,
    )


def _raw(step: Step, listener: ListenerAt) -> Observation:
    """Sends `step.raw` as it is on a new connection and reads one answer."""
    assert step.raw is not None
    source = (step.source, 0) if step.source else None
    try:
        with socket.create_connection((LOOPBACK, listener.port), TIMEOUT, source) as sock:
            sock.sendall(step.raw.encode())
            raw = http.client.HTTPResponse(sock)
            raw.begin()
            response = Response(raw.status, Headers(raw.getheaders()), raw.read())
    except CLIENT_ERRORS as exc:
        return Observation(error=_describe(exc))
    return _from_response(response)


def _clients(
    step: Step, listener: ListenerAt, one: Callable[[Step, ListenerAt, float], list[Observation]]
) -> list[Observation]:
    """`step.clients` clients, each on its own connection, sending the step (`one` client's
    requests) at the same moment; at a `rate`, their schedules are spread evenly over one
    interval."""
    results: list[list[Observation]] = [[] for _ in range(step.clients)]
    start = threading.Barrier(step.clients)

    def client(index: int) -> None:
        start.wait()
        offset = index / step.clients / step.rate if step.rate is not None else 0.0
        results[index] = one(step, listener, offset)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(step.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [observation for found in results for observation in found]


def _http(step: Step, listener: ListenerAt, offset: float = 0.0) -> list[Observation]:
    """One client's requests: back to back, or paced at `step.rate` from `offset` seconds on
    (a request late on its schedule goes at once; none is skipped)."""
    if step.raw is not None:
        return [_raw(step, listener) for _ in range(step.requests_per_client)]
    tls = listener.protocol == "https"
    session = HttpSession(
        LOOPBACK,
        listener.port,
        host_header=step.host,
        tls=tls,
        sni=step.sni,
        timeout=TIMEOUT,
        proxy_protocol_v1_source=step.proxy_protocol,
        source=step.source,
    )
    body = step.body.encode() if step.body is not None else None
    observations = []
    began = time.monotonic() + offset
    try:
        for number in range(step.requests_per_client):
            if step.rate is not None:
                time.sleep(max(0.0, began + number / step.rate - time.monotonic()))
            if not step.session:
                session.cookies = CookieJar()
            try:
                response = session.request(step.path, step.method, step.headers, body)
            except CLIENT_ERRORS as exc:
                observations.append(Observation(error=_describe(exc)))
            else:
                observations.append(_from_response(response))
    finally:
        session.close()
    return observations


def _websocket(step: Step, listener: ListenerAt) -> Observation:
    try:
        reply = clients.websocket(
            LOOPBACK, listener.port, step.path, step.body or "hello", step.host, TIMEOUT
        )
    except CLIENT_ERRORS as exc:
        return Observation(error=_describe(exc))
    return Observation(
        backend=reply.backend, status=reply.status, body=reply.text, upgraded=reply.status == 101
    )


def _grpc(step: Step, listener: ListenerAt, offset: float = 0.0) -> list[Observation]:
    """One client's calls: over one channel when all must succeed, else each on its own."""
    method = clients.DEFAULT_GRPC_METHOD if step.path == "/" else step.path
    if step.expect.error is None and step.expect.admitted is None:
        try:
            names = clients.grpc_names_over_one_channel(
                LOOPBACK, listener.port, step.count, method, step.host, TIMEOUT
            )
        except grpc.RpcError as exc:
            return [Observation(error=_grpc_error(exc))]
        return [Observation(backend=name, body=name) for name in names]
    observations = []
    for _ in range(step.count):
        try:
            name, _ = clients.grpc_unary(LOOPBACK, listener.port, method, step.host, TIMEOUT)
        except grpc.RpcError as exc:
            observations.append(Observation(error=_grpc_error(exc)))
        else:
            observations.append(Observation(backend=name, body=name))
    return observations


def _grpc_error(exc: grpc.RpcError) -> str:
    code = exc.code() if isinstance(exc, grpc.Call) else None
    details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
    return f"{code.name if code else 'UNKNOWN'}: {details}"


def _stream(step: Step, listener: ListenerAt, held: contextlib.ExitStack | None) -> Observation:
    payload = (step.body if step.body is not None else "hi").encode()
    try:
        if step.kind == "tls":
            reply = clients.tls(
                LOOPBACK, listener.port, step.sni, payload, TIMEOUT, source=step.source
            )
        else:
            reply = clients.tcp(
                LOOPBACK,
                listener.port,
                payload,
                step.proxy_protocol,
                TIMEOUT,
                source=step.source,
                held=held,
            )
    except CLIENT_ERRORS as exc:
        return Observation(error=_describe(exc))
    if not reply.line:
        return Observation(error="connection closed before the backend's greeting")
    return Observation(
        backend=reply.backend,
        body=reply.echo.decode(errors="replace"),
        certificate=reply.peer_cert,
        proxy_source=reply.proxy_source,
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return f"timeout: {exc}"
    return f"{type(exc).__name__}: {exc}"
