"""The whole config (JSON and YAML), dry runs, revisions and rollback, target checks."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from controlplane.api import RecordingPropagator, create_app
from controlplane.model import Config, parse_config
from controlplane.store import SQLiteStore

from .conftest import ADMIN_TOKEN, LOCAL, TestClient, base_config, bearer, state


def with_cluster(name: str, **fields: Any) -> dict[str, Any]:
    config = base_config()
    config["clusters"].append(
        {"name": name, "endpoints": [{"address": "127.0.0.1:18084"}], **fields}
    )
    return config


def test_get_the_config_as_json_and_yaml(client: TestClient) -> None:
    reply = client.get("/v1/config")
    assert reply.status_code == 200 and reply.headers["etag"] == '"1"'
    assert parse_config(reply.json()) == parse_config(base_config())
    as_yaml = client.get("/v1/config", headers={"Accept": "application/yaml"})
    assert as_yaml.headers["content-type"].startswith("application/yaml")
    assert as_yaml.headers["etag"] == '"1"'
    assert parse_config(yaml.safe_load(as_yaml.text)) == parse_config(base_config())


def test_an_empty_store_serves_an_empty_config_at_revision_0(store: SQLiteStore) -> None:
    with TestClient(create_app(store, insecure_local=True), base_url=LOCAL) as local:
        reply = local.get("/v1/config")
        assert reply.json() == {} and reply.headers["etag"] == '"0"'
        assert local.get("/v1/revisions").json() == []
        first = local.put("/v1/config", json=base_config(), headers={"If-Match": '"0"'})
        assert first.status_code == 200 and first.json() == {"revision": 1, "changed": True}


def test_put_json_then_yaml(client: TestClient, propagator: RecordingPropagator) -> None:
    reply = client.put("/v1/config", json=with_cluster("extra"), headers={"If-Match": '"1"'})
    assert reply.status_code == 200 and reply.headers["etag"] == '"2"'
    assert reply.json() == {"revision": 2, "changed": True}
    text = yaml.safe_dump(with_cluster("other"))
    reply = client.put("/v1/config", content=text, headers={"Content-Type": "application/yaml"})
    assert reply.json() == {"revision": 3, "changed": True}
    assert [c["name"] for c in client.get("/v1/config").json()["clusters"]] == [
        "api",
        "web",
        "other",
    ]
    assert [n for n, _ in propagator.published] == [1, 2, 3]
    same = client.put("/v1/config", json=with_cluster("other"))
    assert same.json() == {"revision": 3, "changed": False}


def test_get_an_older_revision(client: TestClient) -> None:
    client.put("/v1/config", json=with_cluster("extra")).raise_for_status()
    old = client.get("/v1/config", params={"revision": 1})
    assert old.headers["etag"] == '"1"'
    assert [c["name"] for c in old.json()["clusters"]] == ["api", "web"]
    assert client.get("/v1/config", params={"revision": 9}).status_code == 404
    bad = client.get("/v1/config", params={"revision": "x"})
    assert bad.status_code == 422
    assert bad.json()["issues"][0]["path"] == "query.revision"
    assert client.get("/v1/config", params={"revision": 0}).status_code == 422


@pytest.mark.parametrize(
    ("body", "content_type", "status", "path"),
    [
        (b"listeners: [", "application/yaml", 422, "body"),
        (b"{", "application/json", 422, "body"),
        (b"[1]", "application/json", 422, "(config)"),
        (
            json.dumps({"clusters": [{"name": "a"}]}).encode(),
            "application/json",
            422,
            "clusters[0].endpoints",
        ),
        (json.dumps({"listenerz": []}).encode(), "application/json", 422, "listenerz"),
        (b"a: b", "text/plain", 415, None),
    ],
)
def test_a_bad_config_is_refused_and_changes_nothing(
    client: TestClient, body: bytes, content_type: str, status: int, path: str | None
) -> None:
    store = client.app.state.context.store
    before = state(store)
    for url, method in (("/v1/config", "PUT"), ("/v1/config:validate", "POST")):
        reply = client.request(method, url, content=body, headers={"Content-Type": content_type})
        assert reply.status_code == status, reply.text
        assert set(reply.json()) == {"error", "issues"}
        if path is not None:
            assert path in [i["path"] for i in reply.json()["issues"]]
    assert state(store) == before


def test_put_with_a_stale_if_match_is_412(client: TestClient) -> None:
    client.put("/v1/config", json=with_cluster("extra")).raise_for_status()
    before = state(client.app.state.context.store)
    reply = client.put("/v1/config", json=with_cluster("late"), headers={"If-Match": '"1"'})
    assert reply.status_code == 412 and reply.headers["etag"] == '"2"'
    assert state(client.app.state.context.store) == before


def test_validate_reports_model_changes_without_writing(client: TestClient) -> None:
    config = with_cluster("extra")
    config["listeners"][0]["virtual_hosts"][0]["routes"][0]["timeout"] = "3s"
    del config["listeners"][0]["virtual_hosts"][0]["routes"][1]
    config["listeners"][0]["virtual_hosts"][0]["routes"].append(
        {"name": "docs", "match": {"path": {"prefix": "/docs"}}, "backends": [{"cluster": "web"}]}
    )
    reply = client.post("/v1/config:validate", json=config)
    assert reply.status_code == 200
    body = reply.json()
    assert body["valid"] is True and body["revision"] == 1 and body["proxies"] == {}
    assert sorted((c["kind"], c["name"], c["change"]) for c in body["changes"]) == [
        ("cluster", "extra", "added"),
        ("route", "web/site/api", "changed"),
        ("route", "web/site/default", "removed"),
        ("route", "web/site/docs", "added"),
        ("virtual_host", "web/site", "changed"),
    ]
    assert len(client.get("/v1/revisions").json()) == 1
    same = client.post("/v1/config:validate", json=base_config())
    assert same.json()["changes"] == []


def test_validate_asks_the_explainer_for_per_proxy_detail(seeded: SQLiteStore) -> None:
    class Explainer:
        def explain(self, old: Config | None, new: Config) -> dict[str, Any]:
            return {"envoy": {"clusters": len(new.clusters) - len(old.clusters if old else [])}}

    app = create_app(seeded, insecure_local=True, explainer=Explainer())
    with TestClient(app, base_url=LOCAL) as local:
        reply = local.post("/v1/config:validate", json=with_cluster("extra"))
        assert reply.json()["proxies"] == {"envoy": {"clusters": 1}}


def test_a_config_a_served_proxy_cannot_express_is_422_naming_it(seeded: SQLiteStore) -> None:
    maglev = with_cluster("hashed", lb_policy="maglev", hash_on={"source_ip": True})
    before = state(seeded)
    with TestClient(create_app(seeded, insecure_local=True), base_url=LOCAL) as both:
        for method, url in (("PUT", "/v1/config"), ("POST", "/v1/config:validate")):
            reply = both.request(method, url, json=maglev)
            assert reply.status_code == 422
            assert reply.json() == {
                "error": "haproxy cannot express this config",
                "issues": [
                    {
                        "path": "clusters[2].lb_policy",
                        "message": "haproxy has no maglev hashing; use ring_hash "
                        "(consistent hashing)",
                        "proxy": "haproxy",
                    }
                ],
            }
    assert state(seeded) == before
    with TestClient(
        create_app(seeded, insecure_local=True, targets=("envoy",)), base_url=LOCAL
    ) as envoy_only:
        assert envoy_only.put("/v1/config", json=maglev).status_code == 200


def test_revisions_list_newest_first_with_paging(client: TestClient) -> None:
    for name in ("a", "b", "c"):
        client.put(
            "/v1/config", json=with_cluster(name), headers={"X-Change-Message": f"add {name}"}
        ).raise_for_status()
    revisions = client.get("/v1/revisions").json()
    assert [r["revision"] for r in revisions] == [4, 3, 2, 1]
    assert revisions[0]["message"] == "add c" and revisions[0]["author"] == "admin"
    assert len(revisions[0]["content_hash"]) == 64
    page = client.get("/v1/revisions", params={"limit": 2, "before": 4}).json()
    assert [r["revision"] for r in page] == [3, 2]
    one = client.get("/v1/revisions/2")
    assert one.status_code == 200 and one.json()["message"] == "add a"
    assert client.get("/v1/revisions/99").status_code == 404
    assert client.get("/v1/revisions", params={"limit": 0}).status_code == 422


def test_rollback_makes_a_new_revision_equal_to_the_old_one(
    client: TestClient, propagator: RecordingPropagator
) -> None:
    client.put("/v1/config", json=with_cluster("extra")).raise_for_status()
    reply = client.post("/v1/revisions/1:rollback", headers={"If-Match": '"2"'})
    assert reply.status_code == 200 and reply.headers["etag"] == '"3"'
    assert reply.json() == {"revision": 3, "changed": True, "rolled_back_to": 1}
    revisions = client.get("/v1/revisions").json()
    assert revisions[0]["content_hash"] == revisions[2]["content_hash"]
    assert revisions[0]["message"] == "rollback to revision 1"
    assert propagator.published[-1] == (3, parse_config(base_config()))
    again = client.post("/v1/revisions/3:rollback")
    assert again.json() == {"revision": 3, "changed": False, "rolled_back_to": 3}


def test_rollback_refusals(client: TestClient) -> None:
    client.put("/v1/config", json=with_cluster("extra")).raise_for_status()
    before = state(client.app.state.context.store)
    assert client.post("/v1/revisions/42:rollback").status_code == 404
    assert client.post("/v1/revisions/1:rollback", headers={"If-Match": '"1"'}).status_code == 412
    assert client.post("/v1/revisions/x:rollback").status_code == 422
    assert state(client.app.state.context.store) == before


def test_rollback_to_a_config_a_proxy_cannot_express_is_422(seeded: SQLiteStore) -> None:
    maglev = parse_config(with_cluster("hashed", lb_policy="maglev", hash_on={"source_ip": True}))
    seeded.commit(maglev, 1, "envoy-only era")
    seeded.commit(parse_config(base_config()), 2, "back")
    with TestClient(create_app(seeded, insecure_local=True), base_url=LOCAL) as both:
        reply = both.post("/v1/revisions/2:rollback")
        assert reply.status_code == 422 and reply.json()["issues"][0]["proxy"] == "haproxy"
    assert seeded.head().number == 3  # type: ignore[union-attr]


def test_a_fastapi_validation_error_has_the_common_shape(client: TestClient) -> None:
    reply = client.get("/v1/status/wait", params={"timeout": "soon"})
    assert reply.status_code == 422
    assert reply.json() == {
        "error": "the request is invalid",
        "issues": [
            {
                "path": "query.timeout",
                "message": "Input should be a valid number, unable to parse string as a number",
            }
        ],
    }


def test_unknown_paths_and_methods_have_the_common_shape(client: TestClient) -> None:
    missing = client.get("/v1/nothing")
    assert missing.status_code == 404 and set(missing.json()) == {"error", "issues"}
    wrong = client.delete("/v1/config")
    assert wrong.status_code == 405 and set(wrong.json()) == {"error", "issues"}


def test_the_openapi_schema_describes_bodies_with_the_model(client: TestClient) -> None:
    schema = client.get("/openapi.json", headers=bearer(ADMIN_TOKEN)).json()
    put = schema["paths"]["/v1/config"]["put"]["requestBody"]["content"]
    assert set(put) == {"application/json", "application/yaml"}
    assert {"Config", "Cluster", "Listener", "Route", "NodeGroup", "VirtualHost"} <= set(
        schema["components"]["schemas"]
    )
    assert "/v1/listeners/{listener}/virtual_hosts/{virtual_host}/routes/{route}" in schema["paths"]
    assert "/v1/revisions/{n}:rollback" in schema["paths"]


LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8)
)


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        ("[" * 5000 + "]" * 5000, "application/json", "nested too deeply"),
        ("[" * 5000 + "]" * 5000, "application/yaml", "nest"),
        ('{"a":' * 100 + "1" + "}" * 100, "application/json", "more than 32 levels"),
        ("a: &a [*a]", "application/yaml", "more than 32 levels"),
        (LAUGHS, "application/yaml", "more than 2000000 values"),
    ],
)
def test_hostile_bodies_are_422(
    client: TestClient, body: str, content_type: str, message: str
) -> None:
    before = state(client.app.state.context.store)
    reply = client.put("/v1/config", content=body, headers={"Content-Type": content_type})
    assert reply.status_code == 422 and message in reply.json()["error"]
    assert state(client.app.state.context.store) == before


@pytest.mark.parametrize(
    "url",
    [
        "/v1/config?revision=99999999999999999999",
        "/v1/revisions/99999999999999999999",
        "/v1/status/wait?revision=99999999999999999999",
    ],
)
def test_revision_numbers_beyond_any_integer_are_404(client: TestClient, url: str) -> None:
    assert client.get(url).status_code == 404
    assert client.post("/v1/revisions/99999999999999999999:rollback").status_code == 404
    assert len(client.get("/v1/revisions", params={"before": 10**20}).json()) == 1
