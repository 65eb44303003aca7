"""What a web page can make a browser send is refused: changes from pages of other origins
(CSRF), bodies of the types forms send, and, with `--insecure-local`, requests for host
names other than loopback ones (DNS rebinding)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from controlplane.api import create_app
from controlplane.serve import build_app
from controlplane.store import SQLiteStore

from .conftest import LOCAL, TestClient, state
from .served import served

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
EVIL = "http://attacker.example"


@pytest.fixture
def local(seeded: SQLiteStore) -> Iterator[TestClient]:
    """A client of an `insecure_local` API (no token needed) with two revisions."""
    with TestClient(create_app(seeded, insecure_local=True), base_url=LOCAL) as c:
        extra = {"name": "extra", "endpoints": [{"address": "127.0.0.1:18099"}]}
        assert c.post("/v1/clusters", json=extra).status_code == 201
        yield c


def test_a_cross_site_form_post_does_not_roll_back(local: TestClient) -> None:
    store = local.app.state.context.store
    before = state(store)
    for headers in (
        {**FORM, "Origin": EVIL, "Sec-Fetch-Site": "cross-site"},  # what a browser sends
        {**FORM, "Origin": EVIL},
        {**FORM, "Sec-Fetch-Site": "cross-site"},
        {"Origin": EVIL},
        {"Origin": "null"},  # a sandboxed frame or a local file
        {"Sec-Fetch-Site": "same-site"},  # another port of the same host is another origin
    ):
        reply = local.post("/v1/revisions/1:rollback", headers=headers)
        assert reply.status_code == 403, (headers, reply.text)
        assert reply.json() == {
            "error": "changes from a web page of another origin are refused",
            "issues": [],
        }
    assert state(store) == before


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/x-www-form-urlencoded", b""),
        ("application/x-www-form-urlencoded", b"a=b"),
        ("multipart/form-data; boundary=x", b"--x--\r\n"),
        ("text/plain", b""),
        ("text/plain;charset=UTF-8", b'{"name": "x"}'),
        (None, b'{"name": "x"}'),
        ("application/octet-stream", b'{"name": "x"}'),
    ],
)
def test_writes_carry_json_or_yaml_and_say_so(
    local: TestClient, content_type: str | None, body: bytes
) -> None:
    store = local.app.state.context.store
    before = state(store)
    headers = {} if content_type is None else {"Content-Type": content_type}
    for method, url in (
        ("POST", "/v1/revisions/1:rollback"),
        ("POST", "/v1/clusters"),
        ("PUT", "/v1/config"),
        ("PATCH", "/v1/clusters/api"),
        ("DELETE", "/v1/clusters/extra"),
    ):
        reply = local.request(method, url, content=body, headers=headers)
        assert reply.status_code == 415, (method, url, reply.text)
        assert set(reply.json()) == {"error", "issues"}
    assert state(store) == before


def test_the_api_s_own_pages_and_other_clients_may_write(local: TestClient) -> None:
    same_origin = {"Origin": LOCAL, "Sec-Fetch-Site": "same-origin"}  # e.g. /docs
    reply = local.post("/v1/revisions/1:rollback", headers=same_origin)
    assert reply.status_code == 200, reply.text
    typed = {"Sec-Fetch-Site": "none", "Content-Type": "application/json; charset=utf-8"}
    patched = local.patch("/v1/clusters/api", content=b'{"connect_timeout": "2s"}', headers=typed)
    assert patched.status_code == 200, patched.text
    yaml = {"Content-Type": "application/yaml"}
    assert local.post("/v1/config:validate", content=b"clusters: []", headers=yaml).is_success
    assert local.post("/v1/revisions/2:rollback").status_code == 200  # no body, no type


def test_reads_from_other_origins_still_answer_without_sharing(local: TestClient) -> None:
    reply = local.get("/v1/config", headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site"})
    assert reply.status_code == 200
    assert "access-control-allow-origin" not in reply.headers


def test_insecure_local_answers_only_loopback_host_names(seeded: SQLiteStore) -> None:
    before = state(seeded)
    with served(build_app(seeded, "127.0.0.1", insecure_local=True)) as url:
        port = url.rsplit(":", 1)[1]
        with httpx.Client(base_url=url, timeout=10) as client:
            for host in (
                f"127.0.0.1:{port}",
                "127.0.0.1",
                f"127.8.9.10:{port}",
                "localhost",
                f"LocalHost:{port}",
                f"[::1]:{port}",
                "[::1]",
            ):
                reply = client.get("/v1/config", headers={"Host": host})
                assert reply.status_code == 200, (host, reply.text)
            for host in (
                f"attacker.example:{port}",
                "attacker.example",
                f"127.0.0.1.attacker.example:{port}",
                f"localhost.attacker.example:{port}",
                f"10.0.0.1:{port}",
                f"127.0.0.1:{port}x",
                "",
            ):
                for method in ("GET", "POST"):
                    path = "/v1/config" if method == "GET" else "/v1/revisions/1:rollback"
                    reply = client.request(method, path, headers={"Host": host})
                    assert reply.status_code == 421, (host, method, reply.text)
                    assert set(reply.json()) == {"error", "issues"}
    assert state(seeded) == before


def test_a_server_with_tokens_answers_any_host_name(client: TestClient) -> None:
    reply = client.get("/v1/config", headers={"Host": "cp.internal:8080"})
    assert reply.status_code == 200
