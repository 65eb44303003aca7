"""The API under a real uvicorn: seeding an empty store, serving, keeping the store across
restarts."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path

import httpx
import pytest

from controlplane.api import TokenSet
from controlplane.model import ConfigError, load_file
from controlplane.serve import (
    ApiServer,
    ServeError,
    ServeOptions,
    build_app,
    check_transport,
    parse_listen,
    seed,
)
from controlplane.store import SQLiteStore
from tests.harness.loop_thread import LoopThread

from .served import served

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def get_json(url: str, token: str | None = None) -> tuple[int, dict[str, str], object]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as reply:
        return reply.status, dict(reply.headers), json.loads(reply.read())


def test_seed_fills_only_an_empty_store(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    try:
        first = seed(store, EXAMPLES / "quickstart.yaml")
        assert first is not None and first.number == 1
        assert first.config == load_file(EXAMPLES / "quickstart.yaml")
        assert seed(store, EXAMPLES / "two-tier.yaml") is None
        assert store.head().number == 1  # type: ignore[union-attr]
    finally:
        store.close()


def test_seed_refuses_what_a_served_proxy_cannot_express(tmp_path: Path) -> None:
    path = tmp_path / "maglev.yaml"
    path.write_text(
        "clusters: [{name: a, endpoints: [{address: '127.0.0.1:1'}], lb_policy: maglev,"
        " hash_on: {source_ip: true}}]\n"
    )
    store = SQLiteStore(tmp_path / "s.db")
    try:
        with pytest.raises(ConfigError, match="haproxy"):
            seed(store, path)
        assert store.head() is None
        assert seed(store, path, targets=("envoy",)) is not None
    finally:
        store.close()


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen("[::1]:0") == ("::1", 0)
    with pytest.raises(ServeError):
        parse_listen("nowhere")


def test_serve_then_restart_keeps_the_store(tmp_path: Path) -> None:
    db = tmp_path / "serve.db"
    tokens = TokenSet.from_data(
        [{"name": "ops", "token": "ops-token-0123456789", "scopes": ["read", "write"]}], "t"
    )
    store = SQLiteStore(db)
    seed(store, EXAMPLES / "quickstart.yaml")
    with served(build_app(store, "127.0.0.1", tokens=tokens)) as url:
        status, headers, body = get_json(f"{url}/v1/config", "ops-token-0123456789")
        assert status == 200 and headers["etag"] == '"1"'
        request = urllib.request.Request(
            f"{url}/v1/clusters/web",
            data=json.dumps({"connect_timeout": "1s"}).encode(),
            method="PATCH",
            headers={
                "Authorization": "Bearer ops-token-0123456789",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert reply.headers["etag"] == '"2"'
    store.close()

    reopened = SQLiteStore(db)
    try:
        assert seed(reopened, EXAMPLES / "quickstart.yaml") is None
        with served(build_app(reopened, "127.0.0.1", tokens=tokens)) as url:
            _, headers, body = get_json(f"{url}/v1/config", "ops-token-0123456789")
            assert headers["etag"] == '"2"'
            assert isinstance(body, dict)
            assert {c["name"]: c for c in body["clusters"]}["web"]["connect_timeout"] == "1s"
    finally:
        reopened.close()


def test_plain_text_off_loopback_is_refused_or_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ServeError, match=r"plain-text xDS on 0\.0\.0\.0"):
        check_transport("127.0.0.1", "0.0.0.0", ServeOptions(db=tmp_path / "s.db"))

    check_transport("0.0.0.0", "0.0.0.0", ServeOptions(db=tmp_path / "s.db", xds_insecure=True))

    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(w.startswith("--xds-insecure: xDS on 0.0.0.0 is plain text") for w in warnings)
    assert any(w.startswith("the API listens on 0.0.0.0 without TLS") for w in warnings)


def test_api_connections_send_answers_at_once(tmp_path: Path) -> None:
    """TCP_NODELAY on every connection: otherwise each answer on a kept-alive connection
    waits for the client's delayed ACK (about 40 ms on Linux)."""
    store = SQLiteStore(tmp_path / "s.db")
    thread = LoopThread("api")
    server = ApiServer(build_app(store, "127.0.0.1", insecure_local=True), "127.0.0.1", 0)
    try:
        thread.run(server.start())
        with httpx.Client(base_url=server.url) as client:
            for _ in range(3):
                assert client.get("/v1/status").status_code == 200
            connections = list(server._server.server_state.connections)
            assert connections
            for connection in connections:
                sock = connection.transport.get_extra_info("socket")  # type: ignore[attr-defined]
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        thread.run(server.stop())
        thread.close()
        store.close()
