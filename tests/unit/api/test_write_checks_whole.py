"""A write is checked as a whole config, however little it changes: a change of one part is
refused for what the rest of the config says about it, with the answer a check of the same
config from scratch gives, and the head does not move."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from controlplane.api.errors import ApiError
from controlplane.api.writes import ConfigWriter
from controlplane.model import PROXY_KINDS
from controlplane.store import SQLiteStore

from .conftest import TestClient, state

ROUTES = "/v1/listeners/web/virtual_hosts/site/routes"
COUNT = 40


def many_routes() -> dict[str, Any]:
    """Two listeners; one virtual host of COUNT routes over COUNT / 4 clusters, one route
    matching a header."""
    routes: list[dict[str, Any]] = [
        {
            "name": f"r{i}",
            "match": {"path": {"prefix": f"/svc{i}"}},
            "backends": [{"cluster": f"c{i % (COUNT // 4)}"}],
        }
        for i in range(COUNT)
    ]
    routes[3]["match"]["headers"] = [{"name": "x-tier", "exact": "gold"}]
    return {
        "listeners": [
            {
                "name": "web",
                "address": "127.0.0.1:10000",
                "protocol": "http",
                "virtual_hosts": [{"name": "site", "domains": ["*"], "routes": routes}],
            },
            {
                "name": "db",
                "address": "127.0.0.1:10001",
                "protocol": "tcp",
                "default_cluster": "db",
            },
        ],
        "clusters": [
            *(
                {"name": f"c{i}", "endpoints": [{"address": f"127.0.0.1:{18000 + i}"}]}
                for i in range(COUNT // 4)
            ),
            {"name": "db", "protocol": "tcp", "endpoints": [{"address": "127.0.0.1:15432"}]},
        ],
    }


@pytest.fixture
def loaded(client: TestClient) -> TestClient:
    client.put("/v1/config", json=many_routes()).raise_for_status()
    return client


def issues_from_scratch(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The issues of `data` checked with nothing known beforehand."""
    with pytest.raises(ApiError) as refused:
        ConfigWriter(SQLiteStore(":memory:"), PROXY_KINDS).check(data)
    assert refused.value.status == 422
    return list(refused.value.issues)


def refused(
    client: TestClient, store: SQLiteStore, method: str, url: str, body: Any = None
) -> list[dict[str, Any]]:
    before = state(store)
    reply = client.request(method, url, json=body)
    assert reply.status_code == 422, reply.text
    assert state(store) == before
    return list(reply.json()["issues"])


def paths(issues: list[dict[str, Any]]) -> list[str]:
    return [issue["path"] for issue in issues]


def test_removing_a_cluster_routes_send_to_is_refused_where_they_name_it(
    loaded: TestClient, seeded: SQLiteStore
) -> None:
    issues = refused(loaded, seeded, "DELETE", "/v1/clusters/c1")
    assert paths(issues) == [
        f"listeners[0].virtual_hosts[0].routes[{i}].backends[0].cluster"
        for i in range(1, COUNT, COUNT // 4)
    ]
    assert {issue["message"] for issue in issues} == {"no cluster named 'c1'"}


def test_a_cluster_turned_tcp_under_http_routes_is_refused(
    loaded: TestClient, seeded: SQLiteStore
) -> None:
    issues = refused(loaded, seeded, "PATCH", "/v1/clusters/c2", {"protocol": "tcp"})
    assert "listeners[0].virtual_hosts[0].routes[2].backends[0].cluster" in paths(issues)


def test_a_new_route_to_a_cluster_of_the_other_protocol_is_refused(
    loaded: TestClient, seeded: SQLiteStore
) -> None:
    body = {"name": "late", "match": {"path": {"prefix": "/late"}}, "backends": [{"cluster": "db"}]}
    issues = refused(loaded, seeded, "POST", f"{ROUTES}?position=0", body)
    assert paths(issues) == ["listeners[0].virtual_hosts[0].routes[0].backends[0].cluster"]


def test_a_route_a_proxy_cannot_express_is_refused_naming_the_proxy(
    loaded: TestClient, seeded: SQLiteStore
) -> None:
    body = {
        "name": "absent",
        "match": {"path": {"prefix": "/q"}, "query": [{"name": "debug", "present": False}]},
        "backends": [{"cluster": "c0"}],
    }
    issues = refused(loaded, seeded, "POST", ROUTES, body)
    assert [(i["path"], i.get("proxy")) for i in issues] == [
        (f"listeners[0].virtual_hosts[0].routes[{COUNT}].match.query[0].present", "envoy")
    ]


def _routes(config: dict[str, Any]) -> list[dict[str, Any]]:
    routes: list[dict[str, Any]] = config["listeners"][0]["virtual_hosts"][0]["routes"]
    return routes


def a_route_named_as_another(config: dict[str, Any]) -> None:
    _routes(config).append(copy.deepcopy(_routes(config)[5]))


def two_listeners_on_one_address(config: dict[str, Any]) -> None:
    config["listeners"][1]["address"] = "127.0.0.1:10000"


def a_prefix_rewrite_without_a_prefix(config: dict[str, Any]) -> None:
    _routes(config)[7].update(prefix_rewrite="/x", match={"path": {"exact": "/seven"}})


def a_control_character_deep_in_a_route(config: dict[str, Any]) -> None:
    _routes(config)[3]["match"]["headers"][0]["exact"] = "gold\u0007"


def a_cluster_renamed_to_a_twin(config: dict[str, Any]) -> None:
    config["clusters"][4]["name"] = "c3"


def a_route_removed_and_a_later_one_broken(config: dict[str, Any]) -> None:
    del _routes(config)[0]
    _routes(config)[9]["backends"].append({"cluster": "nowhere"})


@pytest.mark.parametrize(
    "change",
    [
        a_route_named_as_another,
        two_listeners_on_one_address,
        a_prefix_rewrite_without_a_prefix,
        a_control_character_deep_in_a_route,
        a_cluster_renamed_to_a_twin,
        a_route_removed_and_a_later_one_broken,
    ],
)
def test_a_whole_config_put_back_with_one_change_is_refused_as_from_scratch(
    loaded: TestClient, seeded: SQLiteStore, change: Callable[[dict[str, Any]], None]
) -> None:
    body = loaded.get("/v1/config").json()
    change(body)
    issues = refused(loaded, seeded, "PUT", "/v1/config", body)
    assert issues
    assert issues == issues_from_scratch(body)
