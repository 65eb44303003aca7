"""Each backend kind, hit with its matching client: names, statuses, headers, PROXY parsing."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import grpc
import pytest

from tests.harness import clients
from tests.harness.backends import Backend, BackendFleet, BackendSpec
from tests.harness.clients import CookieJar, Headers, HttpSession


@pytest.fixture(scope="module")
def fleet() -> Iterator[BackendFleet]:
    with BackendFleet() as fleet:
        yield fleet


def raw_exchange(backend: Backend, request: bytes) -> bytes:
    """Sends raw bytes, returns everything the backend answered until it closed."""
    with socket.create_connection((backend.host, backend.port), timeout=5) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def first_line(backend: Backend, request: bytes) -> bytes:
    with socket.create_connection((backend.host, backend.port), timeout=5) as sock:
        sock.sendall(request)
        return sock.makefile("rb").readline()


def test_http1_reports_who_answered_and_what_it_received(fleet: BackendFleet) -> None:
    backend = fleet.start(BackendSpec("h1"))
    response = clients.http(
        backend.host,
        backend.port,
        "/a/../b?x=1&y=%2F",
        headers=[("X-Test", "one"), ("x-test", "two")],
        host_header="example.com",
    )
    assert response.status == 200
    assert response.backend == "h1"
    assert response.headers["X-BACKEND"] == "h1"
    report = response.json()
    assert report["method"] == "GET"
    assert report["path"] == "/a/../b?x=1&y=%2F"
    assert report["headers"]["x-test"] == "one, two"
    assert report["headers"]["host"] == "example.com"
    assert report["client"] == "127.0.0.1"
    assert "proxy_source" not in report


def test_http1_status_is_configurable_and_changeable(fleet: BackendFleet) -> None:
    backend = fleet.start(BackendSpec("failing", status=503, headers={"x-extra": "yes"}))
    response = clients.http(backend.host, backend.port)
    assert (response.status, response.backend, response.headers["x-extra"]) == (
        503,
        "failing",
        "yes",
    )
    backend.status = 204
    response = clients.http(backend.host, backend.port, method="HEAD")
    assert (response.status, response.body) == (204, b"")


def test_http1_keeps_connections_alive_and_reads_bodies(fleet: BackendFleet) -> None:
    backend = fleet.start(BackendSpec("bodies"))
    with HttpSession(backend.host, backend.port) as session:
        assert session.request("/", "POST", body=b"x" * 3000).json()["body_length"] == 3000
        assert session.request("/", method="HEAD").body == b""
        assert session.request("/", headers={"Expect": "100-continue"}, body=b"ab").status == 200
        assert session.connections_opened == 1
    chunked = (
        b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nTrailer: t\r\n\r\n"
    )
    answer = raw_exchange(backend, chunked)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b'"body_length": 7' in answer


def test_session_keeps_cookies(fleet: BackendFleet) -> None:
    backend = fleet.start(BackendSpec("sticky", headers={"set-cookie": 'srv="h1"; Path=/'}))
    jar = CookieJar()
    first = clients.http(backend.host, backend.port, cookies=jar)
    assert first.set_cookies == ['srv="h1"; Path=/']
    assert "cookie" not in first.json()["headers"]
    second = clients.http(backend.host, backend.port, cookies=jar)
    assert second.json()["headers"]["cookie"] == 'srv="h1"'


def test_cookie_jar_replaces_and_deletes() -> None:
    jar = CookieJar()
    jar.update(["a=1; Path=/", "b=2", "a=3"])
    assert jar.header() == "a=3; b=2"
    jar.update(["a=; Max-Age=0"])
    assert jar.header() == "b=2"


def test_headers_are_case_insensitive_and_multi_valued() -> None:
    headers = Headers([("Set-Cookie", "a=1"), ("set-cookie", "b=2"), ("X-One", "1")])
    assert headers.get_all("SET-COOKIE") == ["a=1", "b=2"]
    assert headers.get("set-cookie") == "a=1, b=2"
    assert "x-one" in headers and "x-two" not in headers
    assert headers.get("x-two") is None


def test_http1_parses_proxy_protocol_v1(fleet: BackendFleet) -> None:
    backend = fleet.start(BackendSpec("pp-http", proxy_protocol=True))
    header = clients.proxy_v1_header("192.0.2.7:4242", (backend.host, backend.port))
    answer = raw_exchange(
        backend, header + b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert b'"proxy_source": "192.0.2.7:4242"' in answer
    assert raw_exchange(backend, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == b""


def test_tcp_greets_with_name_and_echoes(fleet: BackendFleet) -> None:
    backend = fleet.start(BackendSpec("t1", kind="tcp"))
    reply = clients.tcp(backend.host, backend.port, payload=b"ping")
    assert (reply.line, reply.backend, reply.echo) == ("t1", "t1", b"ping")


def test_tcp_parses_proxy_protocol_v1_and_v2(fleet: BackendFleet) -> None:
    backend = fleet.start(BackendSpec("t-pp", kind="tcp", proxy_protocol=True))
    reply = clients.tcp(backend.host, backend.port, proxy_protocol_v1_source="[2001:db8::1]:1000")
    assert (reply.backend, reply.proxy_source) == ("t-pp", "[2001:db8::1]:1000")
    addresses = socket.inet_aton("198.51.100.9") + socket.inet_aton("127.0.0.1")
    addresses += struct.pack("!HH", 5555, backend.port)
    v2 = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", 12) + addresses
    local = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x20, 0x00]) + struct.pack("!H", 0)
    assert first_line(backend, v2) == b"t-pp proxy=198.51.100.9:5555\n"
    assert first_line(backend, local) == b"t-pp proxy=None\n"


def test_tls_passthrough_client_sees_backend_certificate(fleet: BackendFleet) -> None:
    backend = fleet.start(BackendSpec("tls1", kind="tls", cert="api.example.com"))
    reply = clients.tls(backend.host, backend.port, sni="api.example.com")
    assert (reply.backend, reply.echo) == ("tls1", b"hi")
    assert reply.peer_cert is not None
    assert reply.peer_cert.common_name == "api.example.com"
    assert reply.peer_cert.dns_names == ("api.example.com", "*.api.example.com")


def test_https_backend_and_client(fleet: BackendFleet) -> None:
    backend = fleet.start(BackendSpec("secure", cert="other.test"))
    response = clients.http(backend.host, backend.port, tls=True, host_header="other.test")
    assert response.backend == "secure"
    assert response.peer_cert is not None and response.peer_cert.common_name == "other.test"


def test_websocket_upgrade_and_plain_get(fleet: BackendFleet) -> None:
    backend = fleet.start(BackendSpec("ws1", kind="websocket"))
    reply = clients.websocket(backend.host, backend.port, "/chat", "hello", host_header="ws.test")
    assert (reply.status, reply.text, reply.backend) == (101, "ws1:hello", "ws1")
    assert clients.http(backend.host, backend.port, "/plain").json()["path"] == "/plain"


def test_websocket_refused_by_plain_http_backend(fleet: BackendFleet) -> None:
    backend = fleet.start(BackendSpec("not-ws", status=403))
    assert clients.websocket(backend.host, backend.port) == clients.WebSocketReply(403, None)


def test_grpc_backend_answers_its_name(fleet: BackendFleet) -> None:
    backends = fleet.start_all([BackendSpec("g1", kind="http2"), BackendSpec("g2", kind="http2")])
    name, trailers = clients.grpc_unary("127.0.0.1", backends["g1"].port, authority="grpc.test")
    assert (name, trailers["x-backend"]) == ("g1", "g1")
    names = clients.grpc_names_over_one_channel("127.0.0.1", backends["g2"].port, 3)
    assert names == ["g2", "g2", "g2"]


def test_stop_refuses_connections_and_restart_reuses_port() -> None:
    with BackendFleet() as fleet:
        backend = fleet.start(BackendSpec("gone"))
        grpc_backend = fleet.start(BackendSpec("gone-grpc", kind="http2"))
        with HttpSession(backend.host, backend.port) as session:
            assert session.request().backend == "gone"
            fleet.stop("gone")
            with pytest.raises(ConnectionError):
                session.request()
        with pytest.raises(ConnectionRefusedError):
            clients.http(backend.host, backend.port)
        again = fleet.start(BackendSpec("gone", port=backend.port))
        assert clients.http(again.host, again.port).backend == "gone"
        fleet.stop("gone-grpc")
        with pytest.raises(grpc.RpcError):
            clients.grpc_unary("127.0.0.1", grpc_backend.port, timeout=1)
    with pytest.raises(ConnectionRefusedError):
        clients.http(again.host, again.port)


def test_fleet_stops_backends_when_the_block_fails() -> None:
    with pytest.raises(RuntimeError), BackendFleet() as fleet:
        backend = fleet.start(BackendSpec("doomed", kind="tcp"))
        raise RuntimeError("test failed")
    with pytest.raises(ConnectionRefusedError):
        clients.tcp(backend.host, backend.port)
