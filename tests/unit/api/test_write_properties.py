"""Sequences of near-valid writes (hypothesis): the store only ever holds configs that are
valid for every served proxy, and a refused write changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.api import create_app
from controlplane.model import PROXY_KINDS, parse_config, target_issues
from controlplane.store import SQLiteStore

from .conftest import ADMIN_TOKEN, TOKENS, TestClient, base_config, bearer, state

ROUTES = "/v1/listeners/web/virtual_hosts/site/routes"
NAMES = st.sampled_from(["api", "web", "c1", "c2", "Bad"])
ADDRESSES = st.sampled_from(["127.0.0.1:18090", "127.0.0.1:18091", "nowhere", "127.0.0.1:0"])
WEIGHTS = st.integers(min_value=-1, max_value=300)
CLUSTERS = st.fixed_dictionaries(
    {
        "name": NAMES,
        "endpoints": st.lists(
            st.fixed_dictionaries({"address": ADDRESSES, "weight": WEIGHTS}), max_size=2
        ),
    },
    optional={
        "lb_policy": st.sampled_from(["round_robin", "maglev", "ring_hash", "fastest"]),
        "hash_on": st.just({"source_ip": True}),
        "connect_timeout": st.sampled_from(["1s", "0s", "soon"]),
    },
)
BACKENDS = st.lists(st.fixed_dictionaries({"cluster": NAMES, "weight": WEIGHTS}), max_size=2)
ROUTE_KEYS = st.sampled_from(["api", "default", "@0", "@1", "@7", "new"])
ROUTE_BODIES = st.fixed_dictionaries(
    {"backends": BACKENDS},
    optional={
        "name": st.sampled_from(["api", "default", "new"]),
        "match": st.sampled_from(
            [{"path": {"prefix": "/x"}}, {"path": {"exact": "no-slash"}}, {"method": "GET"}]
        ),
        "prefix_rewrite": st.just("/y"),
    },
)
IF_MATCH = st.sampled_from([None, '"1"', '"2"', "*", "nonsense", "HEAD"])

OPERATIONS = st.one_of(
    st.tuples(st.just("POST"), st.just("/v1/clusters"), CLUSTERS),
    st.tuples(st.just("PUT"), NAMES.map(lambda n: f"/v1/clusters/{n}"), CLUSTERS),
    st.tuples(st.just("DELETE"), NAMES.map(lambda n: f"/v1/clusters/{n}"), st.none()),
    st.tuples(st.just("PATCH"), ROUTE_KEYS.map(lambda k: f"{ROUTES}/{k}"), ROUTE_BODIES),
    st.tuples(st.just("POST"), st.just(ROUTES), ROUTE_BODIES),
    st.tuples(st.just("DELETE"), ROUTE_KEYS.map(lambda k: f"{ROUTES}/{k}"), st.none()),
    st.tuples(
        st.just("POST"),
        st.sampled_from([1, 2, 3, 40]).map(lambda n: f"/v1/revisions/{n}:rollback"),
        st.none(),
    ),
)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, SQLiteStore]]:
    store = SQLiteStore(Path(tmp_path_factory.mktemp("writes")) / "writes.db")
    with TestClient(create_app(store, tokens=TOKENS), headers=bearer(ADMIN_TOKEN)) as client:
        yield client, store
    store.close()


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(st.tuples(OPERATIONS, IF_MATCH), min_size=1, max_size=6))
def test_writes_keep_the_store_valid_and_refusals_change_nothing(
    api: tuple[TestClient, SQLiteStore], steps: list[tuple[tuple[str, str, Any], str | None]]
) -> None:
    client, store = api
    client.put("/v1/config", json=base_config()).raise_for_status()
    for (method, url, body), if_match in steps:
        before = state(store)
        head = before[0] if before else 0
        headers = {"If-Match": if_match.replace("HEAD", f'"{head}"')} if if_match else {}
        reply = client.request(method, url, json=body, headers=headers)
        assert reply.status_code in (200, 201, 204, 404, 409, 412, 422), reply.text
        if reply.status_code >= 400:
            assert state(store) == before, (method, url, body, reply.text)
            continue
        current = store.head()
        assert current is not None
        assert reply.headers["etag"] == f'"{current.number}"'
        config = parse_config(current.config.model_dump(mode="json"))
        assert all(not target_issues(config, t) for t in PROXY_KINDS)
        assert parse_config(client.get("/v1/config").json()) == current.config
