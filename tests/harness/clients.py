"""Clients that report what a client observes: status, headers, body, which backend answered.

Every call has a timeout and none retries: a failure is raised (or, where a proxy refusing is
itself the observation, reported). TLS clients accept any certificate, send the SNI they are
given, and report the certificate they were shown.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.client import HTTPConnection
from typing import Any

import grpc
from cryptography import x509
from cryptography.x509.oid import NameOID
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as websocket_connect

DEFAULT_GRPC_METHOD = "/controlplane.test.Who/Name"

HeaderItems = Mapping[str, str] | Sequence[tuple[str, str]]


# --- observations --------------------------------------------------------------------------------


class Headers:
    """Response headers: case-insensitive, multi-valued, in the order received."""

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self._items = list(items)

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order; ``[]`` when absent."""
        lowered = name.lower()
        return [value for key, value in self._items if key.lower() == lowered]

    def get(self, name: str, default: str | None = None) -> str | None:
        """The values of ``name`` joined with ", " (their HTTP meaning), or ``default``."""
        values = self.get_all(name)
        return ", ".join(values) if values else default

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self.get_all(name))

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass(frozen=True)
class PeerCert:
    """The certificate a TLS server presented."""

    common_name: str | None
    dns_names: tuple[str, ...]


@dataclass(frozen=True)
class Response:
    """An HTTP response as the client saw it."""

    status: int
    headers: Headers
    body: bytes
    peer_cert: PeerCert | None = None

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    @property
    def backend(self) -> str | None:
        """Which backend answered: its ``x-backend`` header, else its JSON body; ``None`` if
        neither (e.g. the proxy answered itself)."""
        values = self.headers.get_all("x-backend")
        if values:
            return values[0]
        try:
            report = self.json()
        except ValueError:
            return None
        name = report.get("backend") if isinstance(report, dict) else None
        return name if isinstance(name, str) else None

    @property
    def set_cookies(self) -> list[str]:
        """The raw ``Set-Cookie`` values."""
        return self.headers.get_all("set-cookie")


@dataclass
class CookieJar:
    """Cookies to send back, as a browser would for one site: name -> raw value.

    Domain, path and expiry attributes are ignored, except ``Max-Age=0`` which deletes.
    """

    values: dict[str, str] = field(default_factory=dict)

    def update(self, set_cookies: Iterable[str]) -> None:
        for set_cookie in set_cookies:
            pair, *attributes = set_cookie.split(";")
            name, _, value = pair.strip().partition("=")
            if any(a.strip().lower().replace(" ", "") == "max-age=0" for a in attributes):
                self.values.pop(name, None)
            else:
                self.values[name] = value

    def header(self) -> str | None:
        """The ``Cookie`` header value, ``None`` when there is nothing to send."""
        return "; ".join(f"{k}={v}" for k, v in self.values.items()) or None


# --- HTTP/1.1 ------------------------------------------------------------------------------------


def _client_tls_context(alpn: Sequence[str] = ()) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def peer_cert(sock: ssl.SSLSocket) -> PeerCert | None:
    """Names in the certificate the peer presented (read without verifying it)."""
    der = sock.getpeercert(binary_form=True)
    if der is None:
        return None
    cert = x509.load_der_x509_certificate(der)
    common_names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        dns_names = ()
    return PeerCert(str(common_names[0].value) if common_names else None, dns_names)


class _Connection(HTTPConnection):
    """An HTTP/1.1 connection that may speak TLS with an SNI unrelated to the address."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float,
        tls: bool,
        sni: str | None,
        proxy_source: str | None = None,
        source: str | None = None,
    ) -> None:
        super().__init__(
            host, port, timeout=timeout, source_address=(source, 0) if source else None
        )
        self._tls = _client_tls_context(["http/1.1"]) if tls else None
        self._sni = sni
        self._proxy_source = proxy_source
        self.opened = 0
        self.peer_cert: PeerCert | None = None

    def connect(self) -> None:
        super().connect()
        self.opened += 1
        if self._proxy_source is not None:
            self.sock.sendall(proxy_v1_header(self._proxy_source, (self.host, self.port)))
        if self._tls is not None:
            self.sock = self._tls.wrap_socket(self.sock, server_hostname=self._sni)
            self.peer_cert = peer_cert(self.sock)


class HttpSession:
    """One HTTP/1.1 client: keeps its cookies, and reuses one keep-alive connection for as long
    as the server keeps it open (``connections_opened`` counts the connections it needed).

    ``host_header`` defaults to ``host:port``; with TLS, ``sni`` defaults to the host part of
    ``host_header`` when one is given (no SNI otherwise). ``proxy_protocol_v1_source``
    (``ip:port``) opens each connection with a PROXY v1 header claiming that client;
    ``source`` is the local address connections are made from.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        host_header: str | None = None,
        tls: bool = False,
        sni: str | None = None,
        cookies: CookieJar | None = None,
        timeout: float = 5.0,
        proxy_protocol_v1_source: str | None = None,
        source: str | None = None,
    ) -> None:
        self.host_header = host_header or f"{host}:{port}"
        if tls and sni is None and host_header is not None:
            sni = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else None
        self.cookies = cookies if cookies is not None else CookieJar()
        self._connection = _Connection(
            host, port, timeout, tls, sni, proxy_protocol_v1_source, source
        )

    @property
    def connections_opened(self) -> int:
        return self._connection.opened

    def request(
        self,
        path: str = "/",
        method: str = "GET",
        headers: HeaderItems | None = None,
        body: bytes | None = None,
    ) -> Response:
        """Sends one request with exactly this path (no normalisation) and reads the response."""
        conn = self._connection
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", self.host_header)
        items = headers.items() if isinstance(headers, Mapping) else headers or ()
        for name, value in items:
            conn.putheader(name, value)
        if (cookie := self.cookies.header()) is not None:
            conn.putheader("Cookie", cookie)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        try:
            conn.endheaders(body)
            raw = conn.getresponse()
            response = Response(raw.status, Headers(raw.getheaders()), raw.read(), conn.peer_cert)
        except BaseException:
            conn.close()
            raise
        self.cookies.update(response.set_cookies)
        return response

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> HttpSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def http(
    host: str,
    port: int,
    path: str = "/",
    method: str = "GET",
    headers: HeaderItems | None = None,
    host_header: str | None = None,
    tls: bool = False,
    sni: str | None = None,
    body: bytes | None = None,
    cookies: CookieJar | None = None,
    timeout: float = 5.0,
) -> Response:
    """One request on a fresh connection. ``cookies`` are sent, and updated from the answer."""
    with HttpSession(
        host, port, host_header=host_header, tls=tls, sni=sni, cookies=cookies, timeout=timeout
    ) as session:
        return session.request(path, method, headers, body)


# --- WebSocket -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebSocketReply:
    """``status`` 101 and the reply ``text`` when upgraded; the refusal status and ``None`` else."""

    status: int
    text: str | None

    @property
    def backend(self) -> str | None:
        """The name before ":" in a backend's reply."""
        return self.text.split(":", 1)[0] if self.text is not None else None


def websocket(
    host: str,
    port: int,
    path: str = "/",
    message: str = "hello",
    host_header: str | None = None,
    timeout: float = 5.0,
) -> WebSocketReply:
    """Upgrades to WebSocket, sends one text message and returns the first reply."""
    sock = socket.create_connection((host, port), timeout=timeout)
    uri = f"ws://{host_header or f'{host}:{port}'}{path}"
    try:
        with websocket_connect(
            uri, sock=sock, proxy=None, compression=None, open_timeout=timeout,
            close_timeout=timeout, ping_interval=None,
        ) as ws:  # fmt: skip
            ws.send(message)
            reply = ws.recv(timeout=timeout)
    except InvalidStatus as refused:
        return WebSocketReply(refused.response.status_code, None)
    finally:
        sock.close()
    return WebSocketReply(101, reply if isinstance(reply, str) else reply.decode())


# --- gRPC ----------------------------------------------------------------------------------------


def _grpc_channel(host: str, port: int, authority: str | None) -> grpc.Channel:
    options: list[tuple[str, Any]] = [("grpc.enable_http_proxy", 0), ("grpc.enable_retries", 0)]
    if authority is not None:
        options.append(("grpc.default_authority", authority))
    return grpc.insecure_channel(f"{host}:{port}", options=options)


def _grpc_call(channel: grpc.Channel, method: str, timeout: float) -> tuple[str, dict[str, str]]:
    call = channel.unary_unary(method)
    answer, state = call.with_call(b"", timeout=timeout)
    trailers = {key: value for key, value in state.trailing_metadata() or ()}
    return bytes(answer).decode(), trailers


def grpc_unary(
    host: str,
    port: int,
    method: str = DEFAULT_GRPC_METHOD,
    authority: str | None = None,
    timeout: float = 5.0,
) -> tuple[str, dict[str, str]]:
    """One unary call over plaintext HTTP/2 on a fresh channel: (answering backend, trailers).

    A failed call raises ``grpc.RpcError`` (its ``code()`` is the observation).
    """
    with _grpc_channel(host, port, authority) as channel:
        return _grpc_call(channel, method, timeout)


def grpc_names_over_one_channel(
    host: str,
    port: int,
    count: int,
    method: str = DEFAULT_GRPC_METHOD,
    authority: str | None = None,
    timeout: float = 5.0,
) -> list[str]:
    """The backends answering ``count`` sequential calls on one channel (one HTTP/2 connection):
    several names prove per-request balancing by an L7 proxy."""
    with _grpc_channel(host, port, authority) as channel:
        return [_grpc_call(channel, method, timeout)[0] for _ in range(count)]


# --- raw TCP and TLS -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamReply:
    """What a stream client read: the server's first ``line`` ("" if it closed first), the bytes
    that followed (the echo of the payload), and with TLS the certificate shown."""

    line: str
    echo: bytes
    peer_cert: PeerCert | None = None

    @property
    def backend(self) -> str | None:
        return self.line.split(" ", 1)[0] or None

    @property
    def proxy_source(self) -> str | None:
        """The ``ip:port`` a PROXY-protocol backend read from its header."""
        for word in self.line.split(" ")[1:]:
            if word.startswith("proxy="):
                source = word.removeprefix("proxy=")
                return None if source == "None" else source
        return None


def proxy_v1_header(source: str, destination: tuple[str, int]) -> bytes:
    """A PROXY protocol v1 header claiming ``source`` ("ip:port") connected to ``destination``."""
    source_ip, _, source_port = source.rpartition(":")
    source_ip = source_ip.strip("[]")
    family = "TCP6" if ipaddress.ip_address(source_ip).version == 6 else "TCP4"
    dest_ip, dest_port = destination
    return f"PROXY {family} {source_ip} {dest_ip} {source_port} {dest_port}\r\n".encode()


def _exchange(sock: socket.socket, payload: bytes) -> tuple[str, bytes]:
    if payload:
        sock.sendall(payload)
    received = b""
    while b"\n" not in received or len(received.partition(b"\n")[2]) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    line, _, rest = received.partition(b"\n")
    return line.decode(errors="replace"), rest


def tcp(
    host: str,
    port: int,
    payload: bytes = b"hi",
    proxy_protocol_v1_source: str | None = None,
    timeout: float = 5.0,
    source: str | None = None,
) -> StreamReply:
    """Connects (from ``source`` when given), optionally sends a PROXY v1 header claiming that
    source, sends ``payload`` and reads the greeting line and the echo."""
    local = (source, 0) if source else None
    with socket.create_connection((host, port), timeout=timeout, source_address=local) as sock:
        if proxy_protocol_v1_source is not None:
            sock.sendall(proxy_v1_header(proxy_protocol_v1_source, (host, port)))
        line, echo = _exchange(sock, payload)
    return StreamReply(line, echo)


def tls(
    host: str,
    port: int,
    sni: str | None,
    payload: bytes = b"hi",
    timeout: float = 5.0,
    source: str | None = None,
) -> StreamReply:
    """Connects with TLS sending ``sni``, then like ``tcp``; reports the certificate shown."""
    local = (source, 0) if source else None
    with (
        socket.create_connection((host, port), timeout=timeout, source_address=local) as raw,
        _client_tls_context().wrap_socket(raw, server_hostname=sni) as sock,
    ):
        cert = peer_cert(sock)
        line, echo = _exchange(sock, payload)
    return StreamReply(line, echo, cert)
