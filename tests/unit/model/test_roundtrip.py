"""Property: any valid config written out (YAML or JSON) reads back as the same config."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.model import Config, dump_yaml, load_text, parse_config

names = st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True)
durations = st.sampled_from(["250ms", "1s", "5s", "90s", "2m", "1h"])
header_names = st.sampled_from(["x-user", "x-canary", "authorization", "x-request-id"])
values = st.from_regex(r"([a-zA-Z0-9._-]([a-zA-Z0-9 ._-]{0,10}[a-zA-Z0-9._-])?)?", fullmatch=True)
paths = st.from_regex(r"/([a-z0-9]{1,6}/?){0,3}", fullmatch=True)


def value_match() -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda name, cond: {"name": name, **cond},
        header_names,
        st.one_of(
            st.builds(lambda v: {"exact": v}, values),
            st.just({"regex": "[a-z]+[0-9]*"}),
            st.builds(lambda b: {"present": b}, st.booleans()),
        ),
    )


@st.composite
def l7_route(draw: st.DrawFn, clusters: list[str]) -> dict[str, Any]:
    path = draw(
        st.one_of(
            st.builds(lambda p: {"prefix": p}, paths),
            st.builds(lambda p: {"exact": p}, paths),
            st.just({"regex": "/v[0-9]+/.*"}),
        )
    )
    match: dict[str, Any] = {"path": path}
    if draw(st.booleans()):
        match["method"] = draw(st.sampled_from(["GET", "POST", "DELETE"]))
    match["headers"] = draw(st.lists(value_match(), max_size=2))
    match["cookies"] = draw(st.lists(value_match(), max_size=1))
    action = draw(st.sampled_from(["backends", "redirect", "direct_response"]))
    route: dict[str, Any] = {"match": match}
    if action == "backends":
        chosen = draw(st.lists(st.sampled_from(clusters), min_size=1, max_size=3, unique=True))
        route["backends"] = [{"cluster": c, "weight": draw(st.integers(1, 100))} for c in chosen]
        route["timeout"] = draw(durations)
        if draw(st.booleans()):
            route["retries"] = {
                "attempts": draw(st.integers(1, 3)),
                "retry_on": draw(
                    st.lists(
                        st.sampled_from(["connect_failure", "reset", "gateway_error", "5xx"]),
                        min_size=1,
                        unique=True,
                    )
                ),
            }
        if "prefix" in path and draw(st.booleans()):
            route["prefix_rewrite"] = draw(paths)
        route["websocket"] = draw(st.booleans())
        route["request_headers"] = {
            "set": draw(st.dictionaries(header_names, values, max_size=2)),
            "remove": draw(st.lists(header_names, max_size=2, unique=True)),
        }
    elif action == "redirect":
        route["redirect"] = {
            "scheme": draw(st.sampled_from(["http", "https"])),
            "status": draw(st.sampled_from([301, 302, 307, 308])),
        }
    else:
        route["direct_response"] = {"status": draw(st.integers(200, 599)), "body": draw(values)}
    route["response_headers"] = {"add": draw(st.dictionaries(header_names, values, max_size=2))}
    return route


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    cluster_names = draw(st.lists(names, min_size=1, max_size=4, unique=True))
    http_clusters = []
    clusters = []
    for i, name in enumerate(cluster_names):
        policy = draw(st.sampled_from(["round_robin", "least_request", "random", "ring_hash"]))
        cluster: dict[str, Any] = {
            "name": name,
            "endpoints": [
                {"address": f"10.0.{i}.{j + 1}:80{j}", "weight": draw(st.integers(1, 256))}
                for j in range(draw(st.integers(1, 3)))
            ],
            "lb_policy": policy,
            "connect_timeout": draw(durations),
        }
        if policy == "ring_hash":
            cluster["hash_on"] = draw(
                st.sampled_from(
                    [
                        {"source_ip": True},
                        {"header": "x-user"},
                        {"cookie": {"name": "sid", "ttl": "1h"}},
                    ]
                )
            )
        if i == 0:
            cluster["protocol"] = "tcp"
            cluster["hash_on"] = {"source_ip": True} if policy == "ring_hash" else None
            cluster = {k: v for k, v in cluster.items() if v is not None}
        else:
            http_clusters.append(name)
            if draw(st.booleans()):
                cluster["health_check"] = {"path": draw(paths), "interval": "5s", "timeout": "1s"}
        clusters.append(cluster)
    listeners: list[dict[str, Any]] = [
        {
            "name": "l4",
            "address": "0.0.0.0:5432",
            "protocol": "tcp",
            "default_cluster": cluster_names[0],
        }
    ]
    if http_clusters:
        hashes = {json.dumps(c.get("hash_on"), sort_keys=True) for c in clusters[1:]}
        if len(hashes) > 1:  # the clusters of one route must hash alike; keep one per route
            for c in clusters[1:]:
                c.pop("hash_on", None)
                c["lb_policy"] = "round_robin"
        listeners.append(
            {
                "name": "web",
                "address": "0.0.0.0:80",
                "protocol": "http",
                "request_id": draw(st.booleans()),
                "virtual_hosts": [
                    {
                        "name": "all",
                        "domains": ["*"],
                        "routes": draw(st.lists(l7_route(http_clusters), min_size=1, max_size=4)),
                    }
                ],
            }
        )
    return {"listeners": listeners, "clusters": clusters}


@settings(max_examples=60, deadline=None)
@given(configs())
def test_dump_then_load_is_the_identity(data: dict[str, Any]) -> None:
    config = parse_config(data)
    assert load_text(dump_yaml(config)) == config
    assert load_text(config.model_dump_json()) == config
    assert Config.model_validate_json(config.model_dump_json()) == config
