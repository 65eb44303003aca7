"""`POST /v1/explain`: the decision at the head or at a revision, for a read token; a request
that is not one is a 422 naming the field, and changes nothing."""

from __future__ import annotations

from typing import Any

from controlplane.api import create_app
from controlplane.model import parse_config
from controlplane.store import SQLiteStore

from .conftest import READ_TOKEN, TOKENS, WRITE_TOKEN, TestClient, base_config, bearer, state


def reader(store: SQLiteStore) -> TestClient:
    return TestClient(create_app(store, tokens=TOKENS), headers=bearer(READ_TOKEN))


def test_explains_a_request_at_the_head_with_both_proxies_names(seeded: SQLiteStore) -> None:
    with reader(seeded) as client:
        reply = client.post("/v1/explain", json={"listener": "web", "path": "/api/users"})
    assert reply.status_code == 200, reply.text
    data = reply.json()
    assert reply.headers["etag"] == '"1"' and data["revision"] == 1
    assert data["route"]["key"] == "api"
    assert [b["cluster"] for b in data["action"]["backends"]] == ["api"]
    assert data["names"]["envoy"]["route"] == "api"
    assert data["names"]["haproxy"]["route"] == "site/api"
    assert data["route"]["candidates"] == [
        {"route": "default", "precedence": 1, "why": "matches too, but a longer prefix comes first"}
    ]


def test_explains_at_an_older_revision(seeded: SQLiteStore) -> None:
    changed: dict[str, Any] = base_config()
    del changed["listeners"][0]["virtual_hosts"][0]["routes"][0]
    seeded.commit(parse_config(changed), 1, "t", "drop the api route")
    with reader(seeded) as client:
        now = client.post("/v1/explain", json={"listener": "web", "path": "/api"}).json()
        then = client.post("/v1/explain?revision=1", json={"listener": "web", "path": "/api"})
        missing = client.post("/v1/explain?revision=9", json={"listener": "web"})
    assert now["route"]["key"] == "default"
    assert then.json()["route"]["key"] == "api"
    assert missing.status_code == 404


def test_a_yaml_body_is_read_too(seeded: SQLiteStore) -> None:
    with reader(seeded) as client:
        reply = client.post(
            "/v1/explain",
            content=b"listener: web\npath: /x\nheaders: {x-a: '1'}\n",
            headers={"Content-Type": "application/yaml"},
        )
    assert reply.status_code == 200
    assert reply.json()["route"]["key"] == "default"


def test_a_bad_request_is_a_422_naming_each_field(seeded: SQLiteStore) -> None:
    before = state(seeded)
    with reader(seeded) as client:
        reply = client.post(
            "/v1/explain",
            json={"listener": "web", "path": "x", "client_ip": "1.2", "extra": 1},
        )
        unknown = client.post("/v1/explain", json={"listener": "nope"})
    assert reply.status_code == 422
    assert sorted(i["path"] for i in reply.json()["issues"]) == ["client_ip", "extra", "path"]
    assert unknown.status_code == 422
    assert unknown.json()["issues"] == [
        {"path": "listener", "message": "no listener named 'nope' (listeners: web)"}
    ]
    assert state(seeded) == before


def test_explain_needs_the_read_scope(seeded: SQLiteStore) -> None:
    with TestClient(create_app(seeded, tokens=TOKENS), headers=bearer(WRITE_TOKEN)) as client:
        assert client.post("/v1/explain", json={"listener": "web"}).status_code == 403
    with TestClient(create_app(seeded, tokens=TOKENS)) as client:
        assert client.post("/v1/explain", json={"listener": "web"}).status_code == 401
