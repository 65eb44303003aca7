"""Listeners, virtual hosts, routes, clusters and node groups: list, get, create, replace,
patch, delete; 404 for unknown objects, 409 for taken names, 422 with whole-config paths."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.api import RecordingPropagator

from .conftest import TestClient, state

ROUTES = "/v1/listeners/web/virtual_hosts/site/routes"
CLUSTER = {"name": "new", "endpoints": [{"address": "127.0.0.1:18090", "weight": 2}]}


def test_list_and_get_each_kind(client: TestClient) -> None:
    listeners = client.get("/v1/listeners")
    assert listeners.status_code == 200 and listeners.headers["etag"] == '"1"'
    assert [x["name"] for x in listeners.json()] == ["web"]
    assert client.get("/v1/listeners/web").json()["address"] == "127.0.0.1:10000"
    vhosts = client.get("/v1/listeners/web/virtual_hosts").json()
    assert [v["name"] for v in vhosts] == ["site"]
    assert client.get("/v1/listeners/web/virtual_hosts/site").json()["domains"] == ["*"]
    assert [r["name"] for r in client.get(ROUTES).json()] == ["api", "default"]
    route = client.get(f"{ROUTES}/api").json()
    assert route == {
        "name": "api",
        "match": {"path": {"prefix": "/api"}},
        "backends": [{"cluster": "api"}],
    }
    assert client.get(f"{ROUTES}/@1").json()["name"] == "default"
    assert [c["name"] for c in client.get("/v1/clusters").json()] == ["api", "web"]
    assert client.get("/v1/clusters/web").json()["endpoints"] == [{"address": "127.0.0.1:18083"}]
    assert client.get("/v1/node_groups").json() == []


@pytest.mark.parametrize(
    ("url", "what"),
    [
        ("/v1/listeners/nope", "listener 'nope'"),
        ("/v1/listeners/nope/virtual_hosts", "listener 'nope'"),
        ("/v1/listeners/web/virtual_hosts/nope", "virtual host 'nope'"),
        ("/v1/listeners/web/virtual_hosts/nope/routes/api", "virtual host 'nope'"),
        (f"{ROUTES}/nope", "route 'nope'"),
        (f"{ROUTES}/@2", "route '@2'"),
        (f"{ROUTES}/@x", "route '@x'"),
        ("/v1/clusters/nope", "cluster 'nope'"),
        ("/v1/node_groups/nope", "node group 'nope'"),
    ],
)
def test_unknown_objects_are_404_for_every_method(client: TestClient, url: str, what: str) -> None:
    store = client.app.state.context.store
    before = state(store)
    for method in ("GET", "PUT", "PATCH", "DELETE"):
        if method in ("PUT", "PATCH", "DELETE") and url.endswith("virtual_hosts"):
            continue
        reply = client.request(method, url, json={})
        assert reply.status_code == 404, (method, reply.text)
        assert reply.json() == {"error": f"{what} does not exist", "issues": []}
    assert state(store) == before


def test_create_a_cluster_then_a_route_to_it(
    client: TestClient, propagator: RecordingPropagator
) -> None:
    created = client.post("/v1/clusters", json=CLUSTER, headers={"If-Match": '"1"'})
    assert created.status_code == 201
    assert created.headers["etag"] == '"2"'
    assert created.headers["location"] == "/v1/clusters/new"
    assert created.json() == {
        "name": "new",
        "endpoints": [{"address": "127.0.0.1:18090", "weight": 2}],
    }
    route = {"name": "new", "match": {"path": {"exact": "/new"}}, "backends": [{"cluster": "new"}]}
    reply = client.post(ROUTES, json=route, params={"position": 0})
    assert reply.status_code == 201 and reply.headers["etag"] == '"3"'
    assert [r["name"] for r in client.get(ROUTES).json()] == ["new", "api", "default"]
    assert [n for n, _ in propagator.published] == [1, 2, 3]
    assert propagator.published[-1][1].cluster("new").endpoints[0].weight == 2


def test_creating_a_taken_name_is_409(client: TestClient) -> None:
    before = state(client.app.state.context.store)
    reply = client.post("/v1/clusters", json={**CLUSTER, "name": "api"})
    assert reply.status_code == 409
    assert reply.json()["error"] == "a cluster named 'api' already exists"
    assert (
        client.post(ROUTES, json={"name": "api", "backends": [{"cluster": "web"}]}).status_code
        == 409
    )
    assert state(client.app.state.context.store) == before


def test_an_unnamed_route_is_addressed_by_position(client: TestClient) -> None:
    reply = client.post(
        ROUTES, json={"match": {"path": {"exact": "/x"}}, "backends": [{"cluster": "web"}]}
    )
    assert reply.status_code == 201
    assert reply.headers["location"] == f"{ROUTES}/@2"
    assert client.get(f"{ROUTES}/@2").json()["match"] == {"path": {"exact": "/x"}}
    assert client.delete(f"{ROUTES}/@2").status_code == 204
    assert len(client.get(ROUTES).json()) == 2


def test_replace_takes_the_name_from_the_url(client: TestClient) -> None:
    body = {"endpoints": [{"address": "127.0.0.1:18099"}], "lb_policy": "least_request"}
    reply = client.put("/v1/clusters/web", json=body)
    assert reply.status_code == 200 and reply.headers["etag"] == '"2"'
    assert reply.json() == {"name": "web", **body}
    assert client.get("/v1/clusters/web").json() == {"name": "web", **body}


def test_replace_with_another_name_in_the_body_is_422(client: TestClient) -> None:
    reply = client.put("/v1/clusters/web", json={**CLUSTER, "name": "other"})
    assert reply.status_code == 422
    assert reply.json()["issues"] == [
        {"path": "name", "message": "the name in the body ('other') is not 'web'"}
    ]


def test_patch_is_a_json_merge_patch(client: TestClient) -> None:
    reply = client.patch(
        f"{ROUTES}/api",
        json={"timeout": "5s", "retries": {"attempts": 2}, "match": {"method": "GET"}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert reply.status_code == 200
    assert reply.json() == {
        "name": "api",
        "match": {"path": {"prefix": "/api"}, "method": "GET"},
        "backends": [{"cluster": "api"}],
        "timeout": "5s",
        "retries": {"attempts": 2},
    }
    # null removes a field: back to its default.
    removed = client.patch(f"{ROUTES}/api", json={"timeout": None, "retries": None})
    assert "timeout" not in removed.json() and "retries" not in removed.json()


def test_patch_can_rename_when_nothing_refers_to_the_old_name(client: TestClient) -> None:
    reply = client.patch(f"{ROUTES}/default", json={"name": "fallback"})
    assert reply.status_code == 200 and reply.json()["name"] == "fallback"
    assert client.get(f"{ROUTES}/default").status_code == 404


def test_delete_a_route_then_its_cluster(client: TestClient) -> None:
    assert client.delete(f"{ROUTES}/api").status_code == 204
    reply = client.delete("/v1/clusters/api")
    assert reply.status_code == 204 and reply.headers["etag"] == '"3"'
    assert [c["name"] for c in client.get("/v1/clusters").json()] == ["web"]


def test_deleting_a_referenced_cluster_is_422_naming_the_reference(client: TestClient) -> None:
    before = state(client.app.state.context.store)
    reply = client.delete("/v1/clusters/api")
    assert reply.status_code == 422
    assert reply.json() == {
        "error": "the config is invalid",
        "issues": [
            {
                "path": "listeners[0].virtual_hosts[0].routes[0].backends[0].cluster",
                "message": "no cluster named 'api'",
            }
        ],
    }
    assert state(client.app.state.context.store) == before


@pytest.mark.parametrize(
    ("method", "url", "body", "path"),
    [
        (
            "POST",
            "/v1/clusters",
            {"name": "x", "endpoints": [{"address": "nowhere"}]},
            "clusters[2].endpoints[0].address",
        ),
        (
            "POST",
            "/v1/clusters",
            {"name": "Bad Name", "endpoints": [{"address": "a:1"}]},
            "clusters[2].name",
        ),
        (
            "POST",
            "/v1/clusters",
            {"name": "x", "endpoints": [{"address": "a:1"}], "color": 1},
            "clusters[2].color",
        ),
        (
            "PATCH",
            f"{ROUTES}/api",
            {"backends": [{"cluster": "missing"}]},
            "listeners[0].virtual_hosts[0].routes[0].backends[0].cluster",
        ),
        ("PATCH", "/v1/listeners/web", {"protocol": "tcp"}, "listeners[0]"),
        (
            "PUT",
            f"{ROUTES}/default",
            {"backends": [{"cluster": "web", "weight": -1}]},
            "listeners[0].virtual_hosts[0].routes[1].backends[0].weight",
        ),
        (
            "POST",
            "/v1/listeners",
            {"name": "web", "address": "127.0.0.1:1", "protocol": "tcp"},
            None,
        ),
        (
            "POST",
            "/v1/node_groups",
            {"name": "edge", "listeners": ["nope"]},
            "node_groups[0].listeners[0]",
        ),
    ],
)
def test_invalid_writes_are_422_with_config_paths_and_change_nothing(
    client: TestClient, method: str, url: str, body: dict[str, Any], path: str | None
) -> None:
    store = client.app.state.context.store
    before = state(store)
    reply = client.request(method, url, json=body)
    assert reply.status_code in (409, 422), reply.text
    if path is not None:
        assert reply.status_code == 422
        assert path in [i["path"] for i in reply.json()["issues"]], reply.json()
    assert state(store) == before


def test_a_body_that_is_not_an_object_is_422(client: TestClient) -> None:
    for method, url in (
        ("POST", "/v1/clusters"),
        ("PUT", "/v1/clusters/api"),
        ("PATCH", "/v1/clusters/api"),
    ):
        reply = client.request(method, url, json=[1, 2])
        assert reply.status_code == 422
        assert reply.json()["issues"] == [{"path": "body", "message": "expected a JSON object"}]
    broken = client.post(
        "/v1/clusters", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 422 and broken.json()["issues"][0]["path"] == "body"
    xml = client.post("/v1/clusters", content=b"<a/>", headers={"Content-Type": "application/xml"})
    assert xml.status_code == 415


def test_node_groups(client: TestClient) -> None:
    created = client.post("/v1/node_groups", json={"name": "edge", "listeners": ["web"]})
    assert created.status_code == 201
    assert client.get("/v1/node_groups/edge").json() == {"name": "edge", "listeners": ["web"]}
    assert client.delete("/v1/node_groups/edge").status_code == 204


def test_virtual_hosts(client: TestClient) -> None:
    vhost = {
        "name": "docs",
        "domains": ["docs.example.com"],
        "routes": [{"backends": [{"cluster": "web"}]}],
    }
    assert client.post("/v1/listeners/web/virtual_hosts", json=vhost).status_code == 201
    clash = client.patch("/v1/listeners/web/virtual_hosts/docs", json={"domains": ["*"]})
    assert clash.status_code == 422
    assert clash.json()["issues"][0]["path"] == "listeners[0].virtual_hosts[1].domains[0]"
    assert client.delete("/v1/listeners/web/virtual_hosts/docs").status_code == 204


def test_a_write_equal_to_the_head_makes_no_revision(
    client: TestClient, propagator: RecordingPropagator
) -> None:
    reply = client.patch("/v1/clusters/api", json={"lb_policy": "round_robin"})
    assert reply.status_code == 200 and reply.headers["etag"] == '"1"'
    assert len(client.get("/v1/revisions").json()) == 1
    assert [n for n, _ in propagator.published] == [1]


def test_a_stale_if_match_is_412_and_changes_nothing(client: TestClient) -> None:
    client.patch("/v1/clusters/api", json={"connect_timeout": "1s"}).raise_for_status()
    store = client.app.state.context.store
    before = state(store)
    for method, url, body in (
        ("POST", "/v1/clusters", CLUSTER),
        ("PUT", "/v1/clusters/api", CLUSTER | {"name": "api"}),
        ("PATCH", "/v1/clusters/api", {"connect_timeout": "2s"}),
        ("DELETE", f"{ROUTES}/default", None),
    ):
        reply = client.request(method, url, json=body, headers={"If-Match": '"1"'})
        assert reply.status_code == 412, reply.text
        assert reply.headers["etag"] == '"2"'
        assert "head revision is 2" in reply.json()["error"]
    assert state(store) == before
    ok = client.patch(
        "/v1/clusters/api", json={"connect_timeout": "2s"}, headers={"If-Match": '"2"'}
    )
    assert ok.status_code == 200 and ok.headers["etag"] == '"3"'
    star = client.patch(
        "/v1/clusters/api", json={"connect_timeout": "3s"}, headers={"If-Match": "*"}
    )
    assert star.status_code == 200


def test_a_malformed_if_match_is_422(client: TestClient) -> None:
    reply = client.patch("/v1/clusters/api", json={}, headers={"If-Match": "yesterday"})
    assert reply.status_code == 422
    assert reply.json()["issues"][0]["path"] == "headers.If-Match"
