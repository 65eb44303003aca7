"""Bearer tokens and scopes: 401 without a valid token, 403 without the scope; the
insecure local mode; loading tokens; no token value in the logs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from controlplane.api import TokenFileError, TokenSet, create_app, is_loopback
from controlplane.api.auth import digest
from controlplane.serve import ServeError, build_app
from controlplane.store import SQLiteStore

from .conftest import ADMIN_TOKEN, LOCAL, READ_TOKEN, TOKENS, WRITE_TOKEN, TestClient, bearer, state

READS = [
    ("GET", "/v1/config"),
    ("GET", "/v1/listeners"),
    ("GET", "/v1/listeners/web"),
    ("GET", "/v1/listeners/web/virtual_hosts/site/routes/api"),
    ("GET", "/v1/clusters"),
    ("GET", "/v1/node_groups"),
    ("GET", "/v1/revisions"),
    ("GET", "/v1/revisions/1"),
    ("GET", "/v1/status"),
    ("GET", "/v1/status/wait?timeout=0"),
    ("GET", "/metrics"),
]
WRITES = [
    ("PUT", "/v1/config"),
    ("POST", "/v1/clusters"),
    ("PUT", "/v1/clusters/api"),
    ("PATCH", "/v1/clusters/api"),
    ("DELETE", "/v1/clusters/api"),
    ("POST", "/v1/revisions/1:rollback"),
]


@pytest.mark.parametrize(("method", "url"), READS + WRITES)
def test_no_token_is_401(anonymous: TestClient, method: str, url: str) -> None:
    before = state(anonymous.app.state.context.store)
    reply = anonymous.request(method, url, json={})
    assert reply.status_code == 401
    assert reply.headers["www-authenticate"] == "Bearer"
    assert reply.json()["error"] == "a bearer token is required"
    assert state(anonymous.app.state.context.store) == before


@pytest.mark.parametrize(("method", "url"), READS + WRITES)
def test_an_unknown_token_is_401(anonymous: TestClient, method: str, url: str) -> None:
    reply = anonymous.request(method, url, json={}, headers=bearer("not-a-known-token-at-all"))
    assert reply.status_code == 401
    assert reply.json() == {"error": "unknown token", "issues": []}


def test_a_non_bearer_header_is_401(anonymous: TestClient) -> None:
    reply = anonymous.get("/v1/config", headers={"Authorization": f"Basic {READ_TOKEN}"})
    assert reply.status_code == 401


@pytest.mark.parametrize(("method", "url"), WRITES)
def test_a_read_token_cannot_write(anonymous: TestClient, method: str, url: str) -> None:
    before = state(anonymous.app.state.context.store)
    reply = anonymous.request(
        method, url, json={"name": "x", "endpoints": []}, headers=bearer(READ_TOKEN)
    )
    assert reply.status_code == 403
    assert "'write'" in reply.json()["error"]
    assert state(anonymous.app.state.context.store) == before


@pytest.mark.parametrize(("method", "url"), READS)
def test_a_write_only_token_cannot_read(anonymous: TestClient, method: str, url: str) -> None:
    reply = anonymous.request(method, url, headers=bearer(WRITE_TOKEN))
    assert reply.status_code == 403


@pytest.mark.parametrize(("method", "url"), READS)
def test_a_read_token_reads(anonymous: TestClient, method: str, url: str) -> None:
    assert anonymous.request(method, url, headers=bearer(READ_TOKEN)).status_code == 200


def test_the_docs_need_no_token(anonymous: TestClient) -> None:
    assert anonymous.get("/docs").status_code == 200
    assert anonymous.get("/openapi.json").json()["components"]["securitySchemes"]


def test_writes_record_the_token_name_as_author(client: TestClient) -> None:
    client.patch("/v1/clusters/api", json={"connect_timeout": "2s"}).raise_for_status()
    assert client.get("/v1/revisions").json()[0]["author"] == "admin"


def test_insecure_local_admits_requests_without_a_token(seeded: SQLiteStore) -> None:
    with TestClient(create_app(seeded, insecure_local=True), base_url=LOCAL) as local:
        assert local.get("/v1/config").status_code == 200
        reply = local.patch("/v1/clusters/api", json={"connect_timeout": "3s"})
        assert reply.status_code == 200
        assert local.get("/v1/revisions").json()[0]["author"] == "local"
        # A token that is presented must still be valid.
        assert local.get("/v1/config", headers=bearer("wrong-token-0123456789")).status_code == 401


def test_insecure_local_is_refused_off_loopback(seeded: SQLiteStore) -> None:
    with pytest.raises(ServeError, match="loopback"):
        build_app(seeded, "0.0.0.0", insecure_local=True)
    build_app(seeded, "127.0.0.1", insecure_local=True)
    build_app(seeded, "::1", insecure_local=True)


def test_loopback_addresses() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.1.2.3") and is_loopback("::1")
    assert is_loopback("localhost") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1") and not is_loopback("::")


def test_token_values_are_never_logged(
    anonymous: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    anonymous.get("/v1/config", headers=bearer("a-wrong-token-value-123"))
    anonymous.put("/v1/config", json={}, headers=bearer(READ_TOKEN))
    anonymous.get("/v1/config", headers=bearer(ADMIN_TOKEN))
    text = caplog.text
    assert "refused" in text and "reader" in text
    for value in ("a-wrong-token-value-123", READ_TOKEN, ADMIN_TOKEN):
        assert value not in text


def test_tokens_from_a_file_and_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(
        "- {name: ci, token: ci-token-0123456789abc, scopes: [read, write]}\n"
        f"- {{name: ops, sha256: {digest('ops-token-0123456789abc')}, scopes: [read]}}\n"
    )
    env = {
        "CONTROLPLANE_TOKENS": '[{"name": "env", "token": "env-token-0123456789", '
        '"scopes": ["read"]}]'
    }
    tokens = TokenSet.load(path, env)
    ci = tokens.authenticate("ci-token-0123456789abc")
    assert ci is not None and ci.name == "ci" and ci.scopes == {"read", "write"}
    ops = tokens.authenticate("ops-token-0123456789abc")
    assert ops is not None and ops.scopes == {"read"}
    assert tokens.authenticate("env-token-0123456789") is not None
    assert tokens.authenticate("ci-token-0123456789ab") is None
    assert len(TokenSet.load(None, {})) == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{}", "expected a list"),
        ("- {name: a, scopes: [read]}", "exactly one of token, sha256"),
        ("- {name: a, token: short, scopes: [read]}", "16 characters"),
        ("- {name: a, sha256: abc, scopes: [read]}", "64 hex digits"),
        ("- {name: a, token: long-enough-0123456789, scopes: [admin]}", "scopes"),
        ("- {token: long-enough-0123456789, scopes: [read]}", "needs a name"),
        ("- {name: a, token: long-enough-0123456789, scopes: [read], extra: 1}", "unknown"),
        ("- [", "not YAML"),
    ],
)
def test_bad_token_files_are_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(TokenFileError, match=message) as caught:
        TokenSet.from_text(text, "tokens.yaml")
    assert "long-enough-0123456789" not in str(caught.value)


def test_tokens_are_compared_as_digests() -> None:
    assert all(len(t.sha256) == 64 for t in TOKENS.tokens)
    assert TOKENS.authenticate(WRITE_TOKEN).name == "writer"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("peer", "server"),
    [(("203.0.113.7", 40000), "http://testserver"), (("10.0.0.2", 40000), "http://10.0.0.1")],
)
def test_a_token_over_plain_http_from_another_machine_is_refused(
    seeded: SQLiteStore, peer: tuple[str, int], server: str
) -> None:
    app = create_app(seeded, tokens=TOKENS)
    with TestClient(app, base_url=server, client=peer, headers=bearer(ADMIN_TOKEN)) as remote:
        before = state(seeded)
        read = remote.get("/v1/config")
        write = remote.put("/v1/config", json={})
    for reply in (read, write):
        assert reply.status_code == 403, reply.text
        assert "refused over plain HTTP" in reply.json()["error"]
        assert "TLS" in reply.json()["error"]
    assert state(seeded) == before


def test_a_token_over_plain_http_on_loopback_or_over_https_is_accepted(
    seeded: SQLiteStore,
) -> None:
    app = create_app(seeded, tokens=TOKENS)
    local = TestClient(
        app, base_url="http://127.0.0.1", client=("127.0.0.1", 40000), headers=bearer(READ_TOKEN)
    )
    remote_tls = TestClient(
        app,
        base_url="https://cp.example",
        client=("203.0.113.7", 40000),
        headers=bearer(READ_TOKEN),
    )
    with local, remote_tls:
        assert local.get("/v1/config").status_code == 200
        assert remote_tls.get("/v1/config").status_code == 200
