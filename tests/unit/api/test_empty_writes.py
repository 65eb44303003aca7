"""Writes that would leave proxies with nothing: an empty or null body is a 422, and a change
that takes every listener away from a node group that has connected proxies is refused
unless the request asks for it with `?allow_empty_groups=true`."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.api import InMemoryStatus, RecordingPropagator
from controlplane.model import parse_config
from controlplane.store import SQLiteStore

from .conftest import LOCAL, TestClient, base_config, state

NO_LISTENERS = {"clusters": base_config()["clusters"]}


def two_groups() -> dict[str, Any]:
    """Listener `web` for group `edge`, listener `inner` for group `mesh`."""
    config = base_config()
    inner = {"name": "inner", "address": "127.0.0.1:10001", "protocol": "http"}
    routes = [{"backends": [{"cluster": "api"}]}]
    vhost = {"name": "all", "domains": ["*"], "routes": routes}
    config["listeners"].append({**inner, "virtual_hosts": [vhost]})
    config["node_groups"] = [
        {"name": "edge", "listeners": ["web"]},
        {"name": "mesh", "listeners": ["inner"]},
    ]
    return config


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"", "application/yaml"),
        (b"# nothing but a comment\n", "application/yaml"),
        (b"---\n", "application/yaml"),
        (b"null", "application/yaml"),
        (b"~", "application/yaml"),
        (b"null", "application/json"),
        (b"", "application/json"),
    ],
)
def test_an_empty_or_null_config_body_is_422_and_changes_nothing(
    client: TestClient, propagator: RecordingPropagator, body: bytes, content_type: str
) -> None:
    store = client.app.state.context.store
    before = state(store)
    for method, url in (("PUT", "/v1/config"), ("POST", "/v1/config:validate")):
        reply = client.request(method, url, content=body, headers={"Content-Type": content_type})
        assert reply.status_code == 422, (method, url, reply.text)
        assert [i["path"] for i in reply.json()["issues"]] == ["body"], reply.json()
    assert state(store) == before
    assert [n for n, _ in propagator.published] == [1]


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("POST", "/v1/clusters"),
        ("PUT", "/v1/clusters/api"),
        ("PATCH", "/v1/clusters/api"),
        ("POST", "/v1/listeners/web/virtual_hosts/site/routes"),
    ],
)
def test_a_null_object_body_is_422_and_changes_nothing(
    client: TestClient, method: str, url: str
) -> None:
    before = state(client.app.state.context.store)
    reply = client.request(
        method, url, content=b"null", headers={"Content-Type": "application/json"}
    )
    assert reply.status_code == 422 and reply.json()["issues"][0]["path"] == "body", reply.text
    assert state(client.app.state.context.store) == before


def connect_default(status: InMemoryStatus) -> None:
    status.connect("envoy-1", "envoy", "default")
    status.connect("haproxy-1", "haproxy", "default")
    status.connect("elsewhere", "envoy", "other")


DEFAULT_EMPTIED = {
    "path": "listeners",
    "message": "node group 'default' would be left without listeners (no listener); "
    "its connected proxies: envoy-1, haproxy-1",
}


def test_removing_every_listener_of_a_group_with_connected_proxies_is_refused(
    client: TestClient, status: InMemoryStatus, propagator: RecordingPropagator
) -> None:
    connect_default(status)
    store = client.app.state.context.store
    before = state(store)
    for method, url, body in (
        ("PUT", "/v1/config", NO_LISTENERS),
        ("POST", "/v1/config:validate", NO_LISTENERS),
        ("DELETE", "/v1/listeners/web", None),
    ):
        reply = client.request(method, url, json=body)
        assert reply.status_code == 422, (method, url, reply.text)
        assert reply.json() == {
            "error": "this change leaves node groups with connected proxies without any "
            "listener; send ?allow_empty_groups=true to apply it anyway",
            "issues": [DEFAULT_EMPTIED],
        }
    assert state(store) == before
    assert [n for n, _ in propagator.published] == [1]

    allowed = client.post("/v1/config:validate?allow_empty_groups=true", json=NO_LISTENERS)
    assert allowed.status_code == 200
    emptied = client.delete("/v1/listeners/web", params={"allow_empty_groups": "true"})
    assert emptied.status_code == 204 and emptied.headers["etag"] == '"2"'
    assert client.get("/v1/listeners").json() == []


def test_a_rollback_to_a_config_without_listeners_is_refused_the_same_way(
    seeded: SQLiteStore, client: TestClient, status: InMemoryStatus
) -> None:
    seeded.commit(parse_config(NO_LISTENERS), 1, "test", "nothing yet")
    seeded.commit(parse_config(base_config()), 2, "test", "the listener back")
    connect_default(status)
    refused = client.post("/v1/revisions/2:rollback")
    assert refused.status_code == 422 and refused.json()["issues"] == [DEFAULT_EMPTIED]
    assert seeded.head().number == 3  # type: ignore[union-attr]
    allowed = client.post("/v1/revisions/2:rollback?allow_empty_groups=true")
    assert allowed.status_code == 200 and allowed.json()["revision"] == 4


def test_a_group_the_config_no_longer_declares_counts_as_emptied(
    client: TestClient, status: InMemoryStatus
) -> None:
    assert client.put("/v1/config", json=two_groups()).status_code == 200
    status.connect("mesh-1", "envoy", "mesh")
    store = client.app.state.context.store
    before = state(store)
    without_mesh = two_groups()
    without_mesh["node_groups"] = without_mesh["node_groups"][:1]
    without_mesh["listeners"] = without_mesh["listeners"][:1]
    expected = [
        {
            "path": "node_groups",
            "message": "node group 'mesh' would be left without listeners (no longer "
            "declared); its connected proxies: mesh-1",
        }
    ]
    for method, url, body in (
        ("PUT", "/v1/config", without_mesh),
        ("DELETE", "/v1/node_groups/mesh", None),
    ):
        reply = client.request(method, url, json=body)
        assert reply.status_code == 422 and reply.json()["issues"] == expected, reply.text
    assert state(store) == before
    # A group that keeps a listener, any listener, is not emptied.
    moved = client.put("/v1/node_groups/mesh", json={"listeners": ["web"]})
    assert moved.status_code == 200


def test_declaring_the_first_groups_empties_the_default_group(
    client: TestClient, status: InMemoryStatus
) -> None:
    connect_default(status)
    before = state(client.app.state.context.store)
    reply = client.post("/v1/node_groups", json={"name": "edge", "listeners": ["web"]})
    assert reply.status_code == 422, reply.text
    assert reply.json()["issues"] == [
        {
            "path": "node_groups",
            "message": "node group 'default' would be left without listeners (no longer "
            "declared); its connected proxies: envoy-1, haproxy-1",
        }
    ]
    assert state(client.app.state.context.store) == before


def test_groups_without_connected_proxies_or_listeners_to_lose_can_be_emptied(
    store: SQLiteStore, status: InMemoryStatus
) -> None:
    from controlplane.api import create_app

    status.connect("early", "envoy", "default")
    with TestClient(create_app(store, status=status, insecure_local=True), base_url=LOCAL) as local:
        # The group had no listener to lose: an empty store, then a config without any.
        assert local.put("/v1/config", json=NO_LISTENERS).status_code == 200
        assert local.put("/v1/config", json=base_config()).status_code == 200
        status.disconnect("early")
        gone = local.put("/v1/config", json=NO_LISTENERS)
        assert gone.status_code == 200 and gone.json()["revision"] == 3
