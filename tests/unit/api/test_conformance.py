"""HTTP as RFC 9110 has it, and errors as the API promises them: `Allow` on every 405, HEAD
wherever GET is, 412 for a failed If-Match, 422 with a path for any body that is not JSON,
and every error status an operation can answer documented in the OpenAPI schema."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from controlplane.api import create_app
from controlplane.feed.bundles import GroupBundles
from controlplane.feed.http import agent_router
from controlplane.fleet import AgentLedger
from controlplane.fleet.ledger import Ledger
from controlplane.store import SQLiteStore

from .conftest import ADMIN_TOKEN, AGENT_TOKEN, TOKENS, TestClient, bearer, state

ROUTES = "/v1/listeners/web/virtual_hosts/site/routes"
JSON = {"Content-Type": "application/json"}
PATCH = {"Content-Type": "application/merge-patch+json"}
YAML = {"Content-Type": "application/yaml"}


@pytest.fixture
def full(seeded: SQLiteStore) -> Iterator[TestClient]:
    """An admin's client to an API serving the HAProxy agents' endpoints too."""
    app = create_app(
        seeded, tokens=TOKENS, agents=[agent_router(GroupBundles(), AgentLedger(Ledger()))]
    )
    with TestClient(app, headers=bearer(ADMIN_TOKEN)) as client:
        yield client


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/v1/config", "GET, HEAD, PUT"),
        ("/v1/config:validate", "POST"),
        ("/v1/revisions", "GET, HEAD"),
        ("/v1/revisions/1", "GET, HEAD"),
        ("/v1/revisions/1:rollback", "POST"),
        ("/v1/clusters", "GET, HEAD, POST"),
        ("/v1/clusters/api", "DELETE, GET, HEAD, PATCH, PUT"),
        (ROUTES, "GET, HEAD, POST"),
        (f"{ROUTES}/api", "DELETE, GET, HEAD, PATCH, PUT"),
        ("/v1/status", "GET, HEAD"),
        ("/metrics", "GET, HEAD"),
        ("/v1/haproxy/default/status", "POST"),
    ],
)
def test_a_405_lists_every_method_the_path_takes(full: TestClient, path: str, allowed: str) -> None:
    before = state(full.app.state.context.store)
    taken = {m.strip() for m in allowed.split(",")}
    for method in {"GET", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"} - taken:
        reply = full.request(method, path, headers=JSON)
        assert reply.status_code == 405, (method, path, reply.text)
        assert reply.headers["allow"] == allowed, (method, path)
        assert set(reply.json()) == {"error", "issues"}
    assert state(full.app.state.context.store) == before


def test_head_is_answered_as_get_without_the_body(full: TestClient) -> None:
    for path in ("/v1/config", "/v1/clusters/api", "/v1/status", "/v1/revisions/1"):
        got = full.get(path)
        head = full.head(path)
        assert head.status_code == 200 and head.content == b"", path
        for name in ("etag", "content-type", "content-length"):
            assert head.headers.get(name) == got.headers.get(name), (path, name)
    assert full.head("/metrics").headers["content-type"].startswith("text/plain")
    assert full.head("/v1/clusters/nope").status_code == 404


def test_a_failed_if_match_is_412_with_the_head_s_etag(full: TestClient) -> None:
    full.patch("/v1/clusters/api", json={"connect_timeout": "1s"}).raise_for_status()
    store = full.app.state.context.store
    before = state(store)
    cluster = {"name": "other", "endpoints": [{"address": "127.0.0.1:18099"}]}
    config = full.get("/v1/config").json()
    for method, url, body in (
        ("PUT", "/v1/config", config),
        ("POST", "/v1/revisions/1:rollback", None),
        ("POST", "/v1/clusters", cluster),
        ("PUT", "/v1/clusters/api", {"endpoints": [{"address": "127.0.0.1:18099"}]}),
        ("PATCH", "/v1/clusters/api", {"connect_timeout": "2s"}),
        ("DELETE", f"{ROUTES}/default", None),
    ):
        for tag in ('"1"', '"1", "0"', 'W/"1"'):
            reply = full.request(method, url, json=body, headers={"If-Match": tag})
            assert reply.status_code == 412, (method, url, reply.text)
            assert reply.headers["etag"] == '"2"'
            assert set(reply.json()) == {"error", "issues"}
    assert state(store) == before
    taken = full.post("/v1/clusters", json={**cluster, "name": "api"})
    assert taken.status_code == 409  # a conflict without a precondition stays 409


@pytest.mark.parametrize(
    ("method", "url", "headers", "body"),
    [
        ("PUT", "/v1/config", JSON, b"{"),
        ("PUT", "/v1/config", JSON, b'{"listeners": [}'),
        ("PUT", "/v1/config", JSON, b"\xff\xfe"),
        ("PUT", "/v1/config", JSON, b'{"listeners": ' + b"1" * 5000 + b"}"),
        ("PUT", "/v1/config", YAML, b"listeners: " + b"1" * 5000),
        ("PUT", "/v1/config", YAML, b"created: 2001-13-45"),
        ("POST", "/v1/config:validate", JSON, b"[1, 2"),
        ("POST", "/v1/clusters", JSON, b"{'name': 'x'}"),
        ("POST", "/v1/clusters", JSON, b"[]"),
        ("POST", f"{ROUTES}?position=0", JSON, b'"a route"'),
        ("PUT", "/v1/clusters/api", JSON, b"nul"),
        ("PUT", "/v1/clusters/api", JSON, b"42"),
        ("PATCH", "/v1/clusters/api", PATCH, b'{"connect_timeout": "1s"'),
        ("PATCH", "/v1/clusters/api", PATCH, b"[]"),
        ("PATCH", "/v1/clusters/api", PATCH, b"true"),
        ("PATCH", f"{ROUTES}/api", JSON, b'{"backends": [{"cluster": "web"},]}'),
        ("PUT", "/v1/node_groups/none", JSON, b"{"),
        ("POST", "/v1/explain", JSON, b"{"),
        ("POST", "/v1/explain", JSON, b"[]"),
        ("POST", "/v1/haproxy/default/status", JSON, b"{"),
        ("POST", "/v1/haproxy/default/status", JSON, b"[]"),
    ],
)
def test_a_body_that_is_not_the_json_asked_for_is_422_at_body(
    full: TestClient, method: str, url: str, headers: dict[str, str], body: bytes
) -> None:
    before = state(full.app.state.context.store)
    if "/haproxy/" in url:  # the agents' feed is for agents
        headers = {**headers, **bearer(AGENT_TOKEN)}
    reply = full.request(method, url, content=body, headers=headers)
    assert reply.status_code == 422, reply.text
    issues = reply.json()["issues"]
    assert [i["path"] for i in issues] in (["body"], ["(config)"]), issues
    assert state(full.app.state.context.store) == before


def test_the_openapi_schema_documents_every_error_an_operation_can_answer(
    full: TestClient,
) -> None:
    schema = full.get("/openapi.json").json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            where = f"{method.upper()} {path}"
            assert {"401", "403"} <= codes, where
            if "/haproxy/" in path:
                continue  # the agents' feed documents its own answers
            if method != "get":
                assert "415" in codes, where
                if not path.endswith((":validate", ":verify", "/explain")):  # POSTs that read
                    assert {"409", "412"} <= codes, where
            if "requestBody" in operation:
                assert "413" in codes, where
            for code, response in operation["responses"].items():
                if code.startswith("4"):
                    assert "content" in response, (where, code)  # the common error body
