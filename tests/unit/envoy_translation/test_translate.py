"""The Envoy translator on its own: determinism, route order, match and rewrite details, and
what it refuses. Behaviour through a real Envoy lives in tests/integration/envoy_translation."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)

from controlplane.envoy import Resources, translate
from controlplane.envoy.clusters import status_ranges
from controlplane.envoy.matches import cookie_pattern, re2_escape
from controlplane.model import ConfigError, load_file, parse_config, target_issues

ROOT = Path(__file__).resolve().parents[3]
INPUTS = [
    path
    for path in sorted((ROOT / "examples").glob("*.yaml"))
    + sorted((ROOT / "tests/golden").glob("*.yaml"))
    if not target_issues(load_file(path), "envoy")
]


def http_config(*routes: dict[str, Any], **listener: Any) -> dict[str, Any]:
    return {
        "listeners": [
            {
                "name": "web",
                "address": "127.0.0.1:8080",
                "protocol": "http",
                "virtual_hosts": [{"name": "site", "domains": ["*"], "routes": list(routes)}],
                **listener,
            }
        ],
        "clusters": [
            {"name": "a", "endpoints": [{"address": "127.0.0.1:1"}]},
            {"name": "b", "endpoints": [{"address": "127.0.0.1:2"}]},
        ],
    }


def routes_of(resources: Resources) -> list[Any]:
    """The routes of the first host, after the one every host begins with."""
    first, *routes = resources.routes["web"].virtual_hosts[0].routes
    assert first.name.endswith("/host-with-a-comma")
    return routes


def test_every_host_begins_by_refusing_a_host_holding_a_comma() -> None:
    """Envoy joins several Host headers with commas: whichever host the joined text reaches,
    and when it reaches none, the answer is 400 (as HAProxy's, which refuses them)."""
    data = http_config({"backends": [{"cluster": "a"}]})
    data["listeners"][0]["virtual_hosts"] = [
        {"name": "shop", "domains": ["*.example.com"], "routes": [{"backends": [{"cluster": "a"}]}]}
    ]
    vhosts = translate(parse_config(data), "default").routes["web"].virtual_hosts
    assert [(v.name, list(v.domains)) for v in vhosts] == [
        ("shop", ["*.example.com"]),
        ("~host-with-a-comma", ["*"]),
    ]
    for vhost in vhosts:
        first = vhost.routes[0]
        assert first.name == f"{vhost.name}/host-with-a-comma"
        assert first.direct_response.status == 400
        [header] = first.match.headers
        assert (header.name, header.string_match.contains) == (":authority", ",")
    assert len(vhosts[1].routes) == 1  # any other Host it takes finds no route: 404

    with_any = translate(parse_config(http_config({"backends": [{"cluster": "a"}]})), "default")
    assert [v.name for v in with_any.routes["web"].virtual_hosts] == ["site"]


@pytest.mark.parametrize("source", INPUTS, ids=lambda p: p.stem)
def test_translation_is_deterministic(source: Path) -> None:
    for group in load_file(source).group_names():
        first = translate(load_file(source), group).serialized()
        second = translate(load_file(source), group).serialized()
        assert first == second


def test_routes_follow_precedence_not_declaration() -> None:
    config = parse_config(
        http_config(
            {"name": "root", "backends": [{"cluster": "a"}]},
            {
                "name": "short",
                "match": {"path": {"prefix": "/api"}},
                "backends": [{"cluster": "a"}],
            },
            {
                "name": "long",
                "match": {"path": {"prefix": "/api/v1/"}},
                "backends": [{"cluster": "b"}],
            },
            {"name": "exact", "match": {"path": {"exact": "/api"}}, "backends": [{"cluster": "b"}]},
            {"match": {"path": {"regex": "/x.*"}}, "backends": [{"cluster": "b"}]},
        )
    )
    routes = routes_of(translate(config, "default"))
    assert [r.name for r in routes] == ["exact", "site/4", "long", "short", "root"]
    assert routes[2].match.path_separated_prefix == "/api/v1"
    assert routes[-1].match.prefix == "/"


@pytest.mark.parametrize(
    ("cookie", "matches"),
    [
        ("k=v.1", True),
        ("a=1; k=v.1", True),
        ("a=1;k=v.1;b=2", True),
        ("k=v.1 ; b=2", True),
        ("k=vx1", False),
        ("kk=v.1", False),
        ("a=k=v.1", False),
        ("k=v.12", False),
    ],
)
def test_cookie_pattern_matches_one_whole_cookie(cookie: str, matches: bool) -> None:
    pattern = cookie_pattern("k", re2_escape("v.1"))
    assert bool(re.fullmatch(pattern, cookie)) is matches


def test_status_ranges_merge_neighbours() -> None:
    ranges = [(r.start, r.end) for r in status_ranges([204, 200, 201, 299, 200])]
    assert ranges == [(200, 202), (204, 205), (299, 300)]


@pytest.mark.parametrize(
    ("prefix", "rewrite", "expected"),
    [
        ("/api/", "/v2/", ("prefix_rewrite", "/v2")),
        ("/api", "/", ("regex_rewrite", "^/api/*")),
        ("/", "/site", ("prefix_rewrite", "/site/")),
        ("/", "/", ("prefix_rewrite", "/")),
    ],
)
def test_prefix_rewrite_replaces_whole_elements(
    prefix: str, rewrite: str, expected: tuple[str, str]
) -> None:
    config = parse_config(
        http_config(
            {
                "match": {"path": {"prefix": prefix}},
                "backends": [{"cluster": "a"}],
                "prefix_rewrite": rewrite,
            }
        )
    )
    action = routes_of(translate(config, "default"))[0].route
    field, value = expected
    got = action.regex_rewrite.pattern.regex if field == "regex_rewrite" else action.prefix_rewrite
    assert got == value


def test_request_host_is_rewritten_and_empty_values_kept() -> None:
    route = {
        "backends": [{"cluster": "a"}],
        "request_headers": {"set": {"host": "upstream.test", "x-empty": ""}},
    }
    translated = routes_of(translate(parse_config(http_config(route)), "default"))[0]
    assert translated.route.host_rewrite_literal == "upstream.test"
    [option] = translated.request_headers_to_add
    assert (option.header.key, option.header.value, option.keep_empty_value) == (
        "x-empty",
        "",
        True,
    )


@pytest.mark.parametrize("request_id", [True, False])
def test_request_id_and_forwarding_settings(request_id: bool) -> None:
    resources = translate(
        parse_config(http_config({"backends": [{"cluster": "a"}]}, request_id=request_id)),
        "default",
    )
    manager = hcm.HttpConnectionManager()
    resources.listeners["web"].filter_chains[0].filters[-1].typed_config.Unpack(manager)
    assert manager.generate_request_id.value is request_id
    assert manager.use_remote_address.value and manager.xff_num_trusted_hops == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"match": {"query": [{"name": "q", "present": False}]}}, "query"),
    ],
)
def test_what_envoy_cannot_express_is_refused(change: dict[str, Any], field: str) -> None:
    config = parse_config(http_config({"backends": [{"cluster": "a"}], **change}))
    with pytest.raises(ConfigError) as refused:
        translate(config, "default")
    assert all("envoy" in str(issue) for issue in refused.value.issues)
    assert field in str(refused.value)


def test_unknown_group_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        translate(parse_config(http_config({"backends": [{"cluster": "a"}]})), "nope")


def controlplane(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controlplane.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_render_envoy_prints_the_golden_json() -> None:
    result = controlplane("render", "envoy", str(ROOT / "tests/golden/routing.yaml"))
    assert result.returncode == 0, result.stderr
    golden = (ROOT / "tests/golden/envoy/routing.json").read_text()
    assert json.loads(result.stdout) == json.loads(golden)


def test_render_envoy_takes_a_group() -> None:
    result = controlplane("render", "envoy", str(ROOT / "examples/two-tier.yaml"), "--group", "l4")
    assert result.returncode == 0, result.stderr
    assert [x["name"] for x in json.loads(result.stdout)["listeners"]] == ["edge"]


def test_render_envoy_refuses_what_envoy_cannot_express(tmp_path: Path) -> None:
    path = tmp_path / "absent-query.yaml"
    path.write_text(
        json.dumps(
            http_config(
                {
                    "match": {"query": [{"name": "q", "present": False}]},
                    "backends": [{"cluster": "a"}],
                }
            )
        )
    )
    result = controlplane("render", "envoy", str(path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"{path}: listeners[0].virtual_hosts[0].routes[0].match.query[0].present: "
        "envoy cannot match an absent query parameter"
    ]
    assert "Traceback" not in result.stderr


def test_render_envoy_refuses_an_unknown_group() -> None:
    result = controlplane("render", "envoy", str(ROOT / "examples/two-tier.yaml"), "-g", "nope")
    assert result.returncode == 2
    assert "no node group named 'nope'" in result.stderr


def test_a_large_host_becomes_a_matcher_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    from controlplane.envoy import matcher_tree

    monkeypatch.setattr(matcher_tree, "TREE_MIN_ROUTES", 2)
    config = parse_config(
        http_config(
            {"name": "api", "match": {"path": {"prefix": "/api/"}}, "backends": [{"cluster": "a"}]},
            {"name": "x", "match": {"path": {"exact": "/api/x"}}, "backends": [{"cluster": "b"}]},
            {
                "name": "beta",
                "match": {"path": {"prefix": "/"}, "headers": [{"name": "b", "present": True}]},
                "backends": [{"cluster": "b"}],
            },
            {"name": "root", "backends": [{"cluster": "a"}]},
        )
    )

    def names(on_match: Any) -> list[str]:
        from envoy.config.route.v3 import route_components_pb2 as rc

        routes = rc.RouteList()
        assert on_match.action.typed_config.Unpack(routes)
        return [r.name for r in routes.routes]

    vhost = translate(config, "default").routes["web"].virtual_hosts[0]
    assert not vhost.routes
    # the Host-with-a-comma route first, then the tree
    [comma] = vhost.matcher.matcher_list.matchers
    assert comma.predicate.single_predicate.value_match.contains == ","
    assert names(comma.on_match) == ["site/host-with-a-comma"]
    tree = vhost.matcher.on_no_match.matcher.matcher_tree
    assert sorted(tree.prefix_match_map.map) == ["/api", "/api/x"]

    # /apix reaches key /api too: the api route's own match refuses it, `/` routes follow
    assert names(tree.prefix_match_map.map["/api"]) == ["api", "beta", "root"]
    # /api/xy reaches key /api/x: the exact route refuses it, the /api route takes it
    assert names(tree.prefix_match_map.map["/api/x"]) == ["x", "api"]
    assert names(vhost.matcher.on_no_match.matcher.on_no_match) == ["beta", "root"]


def test_hosts_with_regex_routes_keep_the_list(monkeypatch: pytest.MonkeyPatch) -> None:
    from controlplane.envoy import matcher_tree

    monkeypatch.setattr(matcher_tree, "TREE_MIN_ROUTES", 1)
    config = parse_config(
        http_config(
            {"match": {"path": {"regex": "/r.*"}}, "backends": [{"cluster": "a"}]},
            {"match": {"path": {"prefix": "/p"}}, "backends": [{"cluster": "a"}]},
        )
    )
    vhost = translate(config, "default").routes["web"].virtual_hosts[0]
    assert not vhost.HasField("matcher") and len(vhost.routes) == 1 + 2
