"""The HAProxy route tables: decision points, chains in precedence order, condition shapes."""

from __future__ import annotations

from typing import Any

from controlplane.haproxy.render import render
from controlplane.model import parse_config


def bundle_for(routes: list[dict[str, Any]], domains: list[str] | None = None) -> Any:
    return render(
        parse_config(
            {
                "listeners": [
                    {
                        "name": "web",
                        "address": "127.0.0.1:8080",
                        "protocol": "http",
                        "virtual_hosts": [
                            {"name": "site", "domains": domains or ["*"], "routes": routes}
                        ],
                    }
                ],
                "clusters": [
                    {"name": n, "endpoints": [{"address": "127.0.0.1:9000"}]} for n in "abc"
                ],
            }
        ),
        "default",
    )


def entries(bundle: Any, purpose: str) -> dict[str, str]:
    text = bundle.maps.get(f"web.{purpose}.map", "")
    return dict(line.split(" ", 1) for line in text.splitlines())


def test_prefix_keys_end_with_a_slash_so_prefixes_match_whole_elements() -> None:
    bundle = bundle_for(
        [
            {"match": {"path": {"prefix": "/api/"}}, "backends": [{"cluster": "a"}]},
            {"backends": [{"cluster": "b"}]},
        ]
    )
    assert set(entries(bundle, "prefix")) == {"/api/", "/"}
    assert "concat(/),map_beg(web.prefix.map)" in bundle.cfg


def test_the_key_is_the_path_alone_where_one_virtual_host_takes_every_request() -> None:
    routes = [{"match": {"path": {"prefix": "/api"}}, "backends": [{"cluster": "a"}]}]
    alone = bundle_for(routes)
    assert "txn.vh" not in alone.cfg and "txn.key" not in alone.cfg
    assert "path,concat(/),map_beg(web.prefix.map)" in alone.cfg
    named = bundle_for(routes, domains=["example.com"])
    assert set(entries(named, "prefix")) == {"site/api/"}
    assert "var(txn.key),concat(/),map_beg(web.prefix.map)" in named.cfg


def test_a_conditional_prefix_falls_back_to_shorter_prefixes_in_its_chain() -> None:
    bundle = bundle_for(
        [
            {"name": "root", "backends": [{"cluster": "a"}]},
            {
                "name": "beta",
                "match": {"path": {"prefix": "/api"}, "headers": [{"name": "x-b", "exact": "1"}]},
                "backends": [{"cluster": "b"}],
            },
        ]
    )
    api = entries(bundle, "prefix")["/api/"]
    assert api.endswith("|1|site/root|a")  # rank 1: after the header route
    point = api.split("|")[0]
    assert entries(bundle, "match1") == {f"{point}|31=": "0|site/beta|b"}


def test_a_point_led_by_a_route_without_conditions_carries_route_and_backend() -> None:
    bundle = bundle_for(
        [
            {"name": "api", "match": {"path": {"prefix": "/api"}}, "backends": [{"cluster": "b"}]},
            {"name": "moved", "match": {"path": {"exact": "/old"}}, "redirect": {"path": "/new"}},
        ]
    )
    assert entries(bundle, "prefix") == {"/api/": "D2|0|site/api|b"}
    assert entries(bundle, "exact") == {"/old": "D1|0|site/moved|"}
    assert "web.backend0.map" not in bundle.maps
    assert "txn.rank" not in bundle.cfg  # no conditions anywhere: no rules for them


def test_method_beats_headers_and_ranks_follow_precedence() -> None:
    bundle = bundle_for(
        [
            {
                "name": "hdr",
                "match": {"path": {"prefix": "/x"}, "headers": [{"name": "h", "present": True}]},
                "backends": [{"cluster": "a"}],
            },
            {
                "name": "post",
                "match": {"path": {"prefix": "/x"}, "method": "POST"},
                "backends": [{"cluster": "b"}],
            },
        ]
    )
    point = entries(bundle, "prefix")["/x/"]
    values = {**entries(bundle, "match1"), **entries(bundle, "match2")}
    assert values == {f"{point}|POST": "0|site/post|b", f"{point}|1": "1|site/hdr|a"}
    assert "|" not in point  # no route without conditions in the chain


def test_exact_path_chain_includes_matching_regex_and_prefixes() -> None:
    bundle = bundle_for(
        [
            {
                "name": "exact",
                "match": {"path": {"exact": "/a/1"}, "method": "GET"},
                "backends": [{"cluster": "a"}],
            },
            {
                "name": "rx",
                "match": {"path": {"regex": "/a/[0-9]"}},
                "backends": [{"cluster": "b"}],
            },
            {"name": "pre", "match": {"path": {"prefix": "/a"}}, "backends": [{"cluster": "c"}]},
        ]
    )
    assert entries(bundle, "exact")["/a/1"] == "D1|1|site/rx|b"
    assert "{ path -m reg '^(?:/a/[0-9])$' }" in bundle.cfg


def test_unsatisfiable_routes_are_left_out() -> None:
    bundle = bundle_for(
        [
            {
                "match": {
                    "headers": [{"name": "h", "exact": "1"}, {"name": "H", "exact": "2"}],
                },
                "backends": [{"cluster": "a"}],
            },
            {"backends": [{"cluster": "b"}]},
        ]
    )
    assert "web.match1.map" not in bundle.maps
    assert entries(bundle, "prefix") == {"/": "D1|1|site/_1|b"}


def test_weights_become_thresholds_of_one_draw() -> None:
    bundle = bundle_for(
        [
            {
                "name": "split",
                "backends": [
                    {"cluster": "a", "weight": 1},
                    {"cluster": "b", "weight": 2},
                    {"cluster": "c", "weight": 7},
                ],
            }
        ]
    )
    assert entries(bundle, "weights") == {"site/split": "10"}
    assert entries(bundle, "threshold1") == {"site/split": "1"}
    assert entries(bundle, "threshold2") == {"site/split": "3"}
    assert entries(bundle, "backend2") == {"site/split": "c"}
    assert "rand,mod(txn.wsum)" in bundle.cfg


def test_backend_level_options_make_named_backends_that_track_the_primary() -> None:
    config = parse_config(
        {
            "listeners": [
                {
                    "name": "web",
                    "address": "127.0.0.1:8080",
                    "protocol": "http",
                    "virtual_hosts": [
                        {
                            "name": "site",
                            "domains": ["*"],
                            "routes": [
                                {
                                    "backends": [{"cluster": "a"}],
                                    "timeout": "30s",
                                    "retries": {"attempts": 2, "retry_on": ["reset"]},
                                }
                            ],
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "a",
                    "endpoints": [{"address": "app.internal:80"}],
                    "health_check": {"kind": "tcp"},
                }
            ],
        }
    )
    cfg = render(config, "default").cfg
    assert "backend a:t30s:r2-reset" in cfg
    assert "track a/ep1" in cfg
    assert "retry-on empty-response junk-response response-timeout" in cfg
    assert "resolvers system init-addr last,libc,none" in cfg


def test_rendering_is_deterministic() -> None:
    routes = [
        {"match": {"path": {"prefix": f"/p{i}"}}, "backends": [{"cluster": "a"}]} for i in range(50)
    ]
    assert bundle_for(routes).version == bundle_for(list(routes)).version
