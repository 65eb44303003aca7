"""The model's meaning, independent of any proxy: route precedence, regex dialect, groups,
durations and what each proxy cannot express."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.model import (
    DEFAULT_GROUP,
    ConfigError,
    Route,
    check,
    format_duration,
    ordered_routes,
    parse_config,
    target_issues,
)
from controlplane.model.regex import regex_problem

from .conftest import base_config


def routes(*specs: dict[str, Any]) -> list[Route]:
    return [Route.model_validate({"backends": [{"cluster": "c"}], **s}) for s in specs]


def names(ordered: list[Route]) -> list[str | None]:
    return [r.name for r in ordered]


def test_exact_beats_regex_beats_prefix_and_longer_prefix_beats_shorter() -> None:
    table = routes(
        {"name": "root", "match": {"path": {"prefix": "/"}}},
        {"name": "api", "match": {"path": {"prefix": "/api"}}},
        {"name": "regex", "match": {"path": {"regex": "/api/v[0-9]+"}}},
        {"name": "api-v1", "match": {"path": {"prefix": "/api/v1/"}}},
        {"name": "exact", "match": {"path": {"exact": "/api/health"}}},
    )
    assert names(ordered_routes(table)) == ["exact", "regex", "api-v1", "api", "root"]


def test_a_trailing_slash_does_not_lengthen_a_prefix() -> None:
    table = routes(
        {"name": "first", "match": {"path": {"prefix": "/api/"}}},
        {"name": "second", "match": {"path": {"prefix": "/api"}}},
    )
    assert names(ordered_routes(table)) == ["first", "second"]


def test_between_equal_paths_method_then_headers_then_query_then_order_decide() -> None:
    path = {"prefix": "/api"}
    table = routes(
        {"name": "plain", "match": {"path": path}},
        {"name": "one-query", "match": {"path": path, "query": [{"name": "q", "present": True}]}},
        {
            "name": "two-headers",
            "match": {
                "path": path,
                "headers": [{"name": "a", "exact": "1"}],
                "cookies": [{"name": "b", "present": True}],
            },
        },
        {"name": "one-header", "match": {"path": path, "headers": [{"name": "a", "exact": "1"}]}},
        {"name": "method", "match": {"path": path, "method": "POST"}},
        {"name": "plain-later", "match": {"path": path}},
    )
    assert names(ordered_routes(table)) == [
        "method",
        "two-headers",
        "one-header",
        "one-query",
        "plain",
        "plain-later",
    ]


def test_prefix_normalisation() -> None:
    (api, root) = routes({"match": {"path": {"prefix": "/api/"}}}, {})
    assert api.match.path.normalized_prefix == "/api"
    assert root.match.path.normalized_prefix == "/"


@pytest.mark.parametrize(
    "pattern",
    [
        r"/api/v[0-9]+",
        r"^/a(b|c)*$",
        r"(?i)/users/[^/]+",
        r"/x\d{2,3}",
        r"[(?=]",
        r"\(?=x\)",
        r"a{1000}",
        r"b{3,}",
    ],
)
def test_portable_regexes_are_accepted(pattern: str) -> None:
    assert regex_problem(pattern) is None


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"/a(?=b)", "lookahead"),
        (r"/a(?<!b)", "lookbehind"),
        (r"(a)\1", "backreference"),
        (r"(?P<x>a)(?P=x)", "backreference"),
        (r"(?>a)", "atomic"),
        (r"a++", "possessive"),
        (r"/a\Z", r"\Z"),
        (r"/a{1001}", "at most 1000"),
        (r"/a{2,5000}", "at most 1000"),
        (r"/a(", "invalid regex"),
    ],
)
def test_regexes_one_proxy_cannot_run_are_refused(pattern: str, reason: str) -> None:
    problem = regex_problem(pattern)
    assert problem is not None and reason in problem


def test_without_groups_the_default_group_holds_everything() -> None:
    config = parse_config(base_config())
    assert config.group_names() == [DEFAULT_GROUP]
    assert config.for_group(DEFAULT_GROUP).listeners == config.listeners


def test_a_group_receives_its_listeners_and_only_the_clusters_they_use() -> None:
    data = base_config()
    data["node_groups"] = [
        {"name": "l4", "listeners": ["db", "passthrough"]},
        {"name": "l7", "listeners": ["web", "secure"]},
    ]
    config = parse_config(data)
    l4 = config.for_group("l4")
    assert [x.name for x in l4.listeners] == ["db", "passthrough"]
    assert [c.name for c in l4.clusters] == ["postgres"]
    assert [c.name for c in config.for_group("l7").clusters] == ["api", "web"]
    with pytest.raises(KeyError):
        config.for_group("nope")


@pytest.mark.parametrize(
    ("ms", "text"),
    [(250, "250ms"), (1000, "1s"), (90_000, "90s"), (60_000, "1m"), (7_200_000, "2h")],
)
def test_durations_are_written_in_their_shortest_exact_form(ms: int, text: str) -> None:
    assert format_duration(ms) == text


def test_maglev_is_refused_for_haproxy_only() -> None:
    data = base_config()
    data["clusters"][0].update(lb_policy="maglev", hash_on={"source_ip": True})
    config = parse_config(data)
    check(config, "envoy")
    with pytest.raises(ConfigError) as refused:
        check(config, "haproxy")
    assert str(refused.value.issues[0]).startswith("clusters[0].lb_policy: haproxy")


def test_an_absent_query_parameter_is_refused_for_envoy_only() -> None:
    data = base_config()
    data["listeners"][0]["virtual_hosts"][0]["routes"][0]["match"]["query"] = [
        {"name": "debug", "present": False}
    ]
    config = parse_config(data)
    assert target_issues(config, "haproxy") == []
    (issue,) = target_issues(config, "envoy")
    assert str(issue).startswith(
        "listeners[0].virtual_hosts[0].routes[0].match.query[0].present: envoy"
    )
