"""`decide`: the way a request goes, as docs/model.md defines it, each step with its reason.

(Every scenario also checks every request it sends through a real Envoy and a real HAProxy
against the decision: tests/scenarios/explained.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.model import ConfigError, parse_config
from controlplane.model.decision import Decision, Request, decide, parse_request
from controlplane.model.loading import resolve_certificate_files

from .conftest import CERTS


def http(routes: list[dict[str, Any]], vhosts: list[dict[str, Any]] | None = None) -> Any:
    clusters = {"a", "b", "c", "web"}
    return parse_config(
        {
            "listeners": [
                {
                    "name": "web",
                    "address": "127.0.0.1:8080",
                    "protocol": "http",
                    "virtual_hosts": vhosts
                    or [{"name": "site", "domains": ["*"], "routes": routes}],
                }
            ],
            "clusters": [
                {"name": c, "endpoints": [{"address": f"127.0.0.{i + 1}:80"}]}
                for i, c in enumerate(sorted(clusters))
            ],
        }
    )


def ask(config: Any, **request: Any) -> Decision:
    return decide(config, Request(listener="web", **request))


def forward(cluster: str, **extra: Any) -> dict[str, Any]:
    return {"backends": [{"cluster": cluster}], **extra}


def test_the_longest_prefix_wins_whatever_the_order_and_the_loser_says_why() -> None:
    config = http(
        [
            forward("web", name="root"),
            forward("a", name="api", match={"path": {"prefix": "/api"}}),
            forward("b", name="v2", match={"path": {"prefix": "/api/v2/"}}),
        ]
    )
    decision = ask(config, path="/api/v2/users?x=1")
    assert decision.route is not None
    assert (decision.route.key, decision.route.path, decision.route.precedence) == (
        "v2",
        "prefix /api/v2",
        0,
    )
    assert [(c.route, c.why) for c in decision.route.candidates] == [
        ("api", "matches too, but a longer prefix comes first"),
        ("root", "matches too, but a longer prefix comes first"),
    ]
    assert decision.action.clusters() == ["b"]


def test_a_prefix_matches_whole_path_elements() -> None:
    config = http([forward("a", match={"path": {"prefix": "/api"}}), forward("web")])
    assert ask(config, path="/apix").action.clusters() == ["web"]
    assert ask(config, path="/api").action.clusters() == ["a"]
    assert ask(config, path="/api/").action.clusters() == ["a"]


def exact(name: str, path: str, **match: Any) -> dict[str, Any]:
    return forward("a", name=name, match={"path": {"exact": path}, **match})


PRECEDENCE = [
    forward("a", name="regex", match={"path": {"regex": "/[a-z]"}}),
    exact("exact", "/x"),
    exact("post", "/y", method="POST"),
    exact(
        "two",
        "/y",
        headers=[{"name": "x-a", "present": True}],
        cookies=[{"name": "c", "exact": "1"}],
    ),
    exact("one", "/y", headers=[{"name": "x-a", "present": True}]),
    exact("query", "/y", query=[{"name": "q", "present": True}]),
    exact("plain", "/y"),
    exact("first", "/z"),
    exact("second", "/z"),
]


@pytest.mark.parametrize(
    ("asked", "route", "why"),
    [
        ({"path": "/x"}, "exact", "an exact path comes before a regex path, and a regex before"),
        ({"path": "/y", "method": "POST"}, "post", "a route with a method comes first"),
        ({"path": "/y", "headers": {"x-a": "1"}, "cookies": {"c": "1"}}, "two", "more header"),
        ({"path": "/y", "headers": {"x-a": "1", "cookie": "c=1"}}, "two", "more header"),
        ({"path": "/y?q=1"}, "query", "more query conditions come first"),
        ({"path": "/z"}, "first", "the route declared first comes first"),
    ],
)
def test_each_precedence_rule_names_itself(asked: dict[str, Any], route: str, why: str) -> None:
    decision = ask(http(PRECEDENCE), **asked)
    assert decision.route is not None and decision.route.key == route
    assert any(why in c.why for c in decision.route.candidates), decision.route.candidates


def test_routes_whose_conditions_fail_say_which_condition() -> None:
    decision = ask(http(PRECEDENCE), path="/y?q=1", headers={"x-a": "no"})
    assert decision.route is not None and decision.route.key == "one"
    why = {c.route: c.why for c in decision.route.candidates}
    assert why["post"] == "method is GET, not POST"
    assert why["two"] == "cookie c is absent"
    assert why["query"] == "matches too, but more header and cookie conditions come first"


def test_no_route_is_a_404_listing_the_routes_whose_path_matched() -> None:
    config = http([exact("only", "/a", headers=[{"name": "x-a", "exact": "1"}])])
    decision = ask(config, path="/a", headers={"x-a": "2"})
    assert decision.route is None
    assert (decision.action.kind, decision.action.status) == ("not_found", 404)
    assert "only: header x-a is '2', not '1'" in decision.action.reason


def test_query_values_and_cookies_are_compared_raw_and_by_exact_name() -> None:
    config = http(
        [
            forward("b", match={"query": [{"name": "q", "exact": "a b"}]}),
            forward("c", match={"cookies": [{"name": "Session", "regex": "[0-9]+"}]}),
            forward("web"),
        ]
    )
    assert ask(config, path="/?q=a%20b").action.clusters() == ["web"]
    assert ask(config, headers={"cookie": "x=1; Session=42"}).action.clusters() == ["c"]
    assert ask(config, headers={"cookie": "session=42"}).action.clusters() == ["web"]


VHOSTS = [
    {"name": "fallback", "domains": ["*"], "routes": [forward("web")]},
    {"name": "wild", "domains": ["*.example.com"], "routes": [forward("a")]},
    {"name": "deep", "domains": ["*.eu.example.com"], "routes": [forward("b")]},
    {"name": "api", "domains": ["api.example.com"], "routes": [forward("c")]},
]


@pytest.mark.parametrize(
    ("host", "vhost", "why"),
    [
        ("API.Example.com:8080", "api", "exact"),
        ("x.eu.example.com", "deep", "wildcard"),
        ("eu.example.com", "wild", "wildcard"),
        ("example.com", "fallback", "any"),
        (None, "fallback", "any"),
    ],
)
def test_the_most_specific_domain_takes_the_host(host: str | None, vhost: str, why: str) -> None:
    decision = ask(http([], VHOSTS), host=host)
    assert decision.virtual_host is not None
    assert (decision.virtual_host.name, decision.virtual_host.why) == (vhost, why)


def test_no_virtual_host_is_a_404() -> None:
    config = http([], [{"name": "only", "domains": ["a.test"], "routes": [forward("a")]}])
    decision = ask(config, host="b.test")
    assert (decision.virtual_host, decision.action.status) == (None, 404)


def test_weighted_backends_carry_their_shares_and_their_endpoints_shares() -> None:
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
                                    "backends": [
                                        {"cluster": "stable", "weight": 90},
                                        {"cluster": "canary", "weight": 10},
                                    ]
                                }
                            ],
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "stable",
                    "endpoints": [
                        {"address": "127.0.0.1:1", "weight": 3},
                        {"address": "127.0.0.1:2"},
                    ],
                    "lb_policy": "ring_hash",
                    "hash_on": {"cookie": {"name": "sticky"}},
                },
                {
                    "name": "canary",
                    "endpoints": [{"address": "127.0.0.1:3"}],
                    "lb_policy": "ring_hash",
                    "hash_on": {"cookie": {"name": "sticky"}},
                },
            ],
        }
    )
    stable, canary = ask(config).action.backends
    assert (stable.cluster, stable.share, canary.share) == ("stable", 0.9, 0.1)
    assert [(e.address, e.share) for e in stable.endpoints] == [
        ("127.0.0.1:1", 0.75),
        ("127.0.0.1:2", 0.25),
    ]
    assert stable.affinity is not None and "cookie sticky" in stable.affinity


def test_redirects_keep_what_they_do_not_set_and_the_query() -> None:
    config = http(
        [
            {
                "match": {"path": {"prefix": "/secure"}},
                "redirect": {"scheme": "https", "status": 301},
            },
            {
                "match": {"path": {"prefix": "/moved"}},
                "redirect": {"host": "www.example.com", "port": 8443},
            },
        ]
    )
    secure = ask(config, host="example.com:8080", path="/secure/login?x=1").action
    assert (secure.kind, secure.status, secure.location) == (
        "redirect",
        301,
        "https://example.com/secure/login?x=1",
    )
    moved = ask(config, host="example.com", path="/moved/a").action
    assert moved.location == "http://www.example.com:8443/moved/a"


def test_a_direct_response_and_a_rewrite() -> None:
    config = http(
        [
            {"match": {"path": {"exact": "/health"}}, "direct_response": {"status": 204}},
            forward("a", match={"path": {"prefix": "/old"}}, prefix_rewrite="/"),
            forward("b", match={"path": {"prefix": "/api"}}, prefix_rewrite="/v2"),
        ]
    )
    answer = ask(config, path="/health").action
    assert (answer.kind, answer.status, answer.body) == ("direct_response", 204, "")
    assert ask(config, path="/old/page?q=1").action.path == "/page?q=1"
    assert ask(config, path="/old").action.path == "/"
    assert ask(config, path="/api/x").action.path == "/v2/x"


def test_an_upgrade_the_route_does_not_allow_is_refused() -> None:
    config = http([forward("a", match={"path": {"prefix": "/ws"}}, websocket=True), forward("b")])
    upgrade = {"upgrade": "websocket", "connection": "Upgrade"}
    assert ask(config, path="/ws", headers=upgrade).action.kind == "forward"
    refused = ask(config, path="/chat", headers=upgrade).action
    assert (refused.kind, refused.status) == ("refused", 403)
    other = ask(config, path="/ws", headers={**upgrade, "upgrade": "h2c"}).action
    assert other.kind == "refused"


def test_policies_say_what_applies_to_the_request() -> None:
    config = http(
        [
            forward(
                "a",
                retries={"attempts": 2, "retry_on": ["5xx"]},
                timeout="2s",
                request_headers={"set": {"x-env": "prod"}, "remove": ["x-debug"]},
                response_headers={"add": {"x-served-by": "lb"}},
            )
        ]
    )
    policies = {p.kind: p for p in ask(config).policies}
    assert sorted(policies) == [
        "forwarded_for",
        "request_headers",
        "response_headers",
        "retries",
        "timeout",
    ]
    assert policies["timeout"].detail == {"per_attempt": "2s", "total": "6s"}
    assert policies["request_headers"].detail["set"] == {"x-env": "prod"}
    assert policies["retries"].detail == {"attempts": 2, "retry_on": ["5xx"]}


def tls_config() -> Any:
    data = {
        "listeners": [
            {
                "name": "secure",
                "address": "127.0.0.1:8443",
                "protocol": "https",
                "certificates": [
                    {
                        "server_names": ["other.test"],
                        "cert": "other.test.crt",
                        "key": "other.test.key",
                    },
                    {
                        "server_names": ["example.com", "*.example.com"],
                        "cert": "example.com.crt",
                        "key": "example.com.key",
                    },
                ],
                "virtual_hosts": [{"name": "site", "domains": ["*"], "routes": [forward("a")]}],
            },
            {
                "name": "pass",
                "address": "127.0.0.1:9443",
                "protocol": "tls",
                "sni_routes": [
                    {"server_names": ["*.example.com"], "cluster": "wild"},
                    {"server_names": ["api.example.com"], "cluster": "api"},
                ],
            },
            {
                "name": "raw",
                "address": "127.0.0.1:5432",
                "protocol": "tcp",
                "default_cluster": "api",
            },
        ],
        "clusters": [
            {"name": "a", "endpoints": [{"address": "127.0.0.1:1"}]},
            {"name": "wild", "protocol": "tcp", "endpoints": [{"address": "127.0.0.1:2"}]},
            {"name": "api", "protocol": "tcp", "endpoints": [{"address": "127.0.0.1:3"}]},
        ],
    }
    resolve_certificate_files(data, CERTS)
    return parse_config(data)


def test_a_rate_limit_names_the_bucket_that_counts_the_request() -> None:
    per_user = {"requests": 10, "per": "1s", "key": {"header": "X-User"}}
    by_ip = {"requests": 5, "per": "1m", "key": "client_ip", "scope": "group"}
    vhost = {
        "name": "site",
        "domains": ["*"],
        "rate_limit": {"requests": 100, "per": "1s"},
        "routes": [
            forward("a", match={"path": {"prefix": "/search"}}, rate_limit=per_user),
            forward("a", match={"path": {"prefix": "/login"}}, rate_limit=by_ip),
            forward("a", match={"path": {"prefix": "/health"}}, rate_limit=False),
            forward("b"),
        ],
    }
    config = http([], [vhost])

    def limit(**request: Any) -> dict[str, Any] | None:
        found = [p for p in ask(config, **request).policies if p.kind == "rate_limit"]
        return found[0].detail if found else None

    alice = limit(path="/search", headers={"x-user": "alice"})
    assert alice is not None and (alice["bucket"], alice["requests"], alice["burst"]) == (
        "alice",
        10,
        10,
    )
    nobody = limit(path="/search")
    assert nobody is not None and nobody["bucket"] == ""
    login = limit(path="/login", client_ip="203.0.113.7")
    assert login is not None and (login["bucket"], login["scope"]) == ("203.0.113.7", "group")
    assert limit(path="/health") is None
    default = limit(path="/other")
    assert default is not None and (default["requests"], default["key"]) == (100, "none")


def test_a_request_without_the_key_its_rate_limit_requires_is_refused() -> None:
    required = {"requests": 5, "per": "1m", "key": {"header": "x-api-key", "missing": "deny"}}
    config = http([forward("a", rate_limit=required)])
    refused = ask(config).action
    assert (refused.kind, refused.status) == ("refused", 403)
    assert "x-api-key" in refused.reason
    assert ask(config, headers={"x-api-key": "k"}).action.kind == "forward"


def test_https_picks_its_certificate_by_sni_and_the_first_without_a_match() -> None:
    config = tls_config()
    by_wildcard = decide(config, Request(listener="secure", sni="Shop.Example.com")).tls
    assert by_wildcard is not None
    assert (by_wildcard.index, by_wildcard.server_name) == (1, "*.example.com")
    fallback = decide(config, Request(listener="secure", sni="unknown.test")).tls
    assert fallback is not None and (fallback.index, fallback.server_name) == (0, None)


def test_tls_passthrough_routes_by_sni_and_closes_what_nothing_takes() -> None:
    config = tls_config()
    exact = decide(config, Request(listener="pass", sni="api.example.com"))
    assert exact.action.clusters() == ["api"]
    assert exact.tls is not None and exact.tls.why == "exact name"
    assert decide(config, Request(listener="pass", sni="x.example.com")).action.clusters() == [
        "wild"
    ]
    closed = decide(config, Request(listener="pass", sni="other.test")).action
    assert closed.kind == "closed"
    tcp = decide(config, Request(listener="raw"))
    assert (tcp.listener.layer, tcp.action.clusters()) == ("L4", ["api"])


def test_a_bad_request_or_an_unknown_listener_is_refused_with_the_field() -> None:
    with pytest.raises(ConfigError) as bad:
        parse_request({"listener": "web", "path": "no-slash", "headers": {"x y": "1"}})
    assert sorted(i.path[0] for i in bad.value.issues) == ["headers", "path"]
    with pytest.raises(ConfigError) as unknown:
        decide(http([forward("a")]), Request(listener="nope"))
    assert [str(i) for i in unknown.value.issues] == [
        "listener: no listener named 'nope' (listeners: web)"
    ]


def firewalled(firewall: dict[str, Any], **listener: Any) -> Any:
    routes = [
        forward("a", name="open", match={"path": {"prefix": "/open"}}, firewall={"enabled": False}),
        forward(
            "b",
            name="watched",
            match={"path": {"prefix": "/watched"}},
            firewall={"mode": "detect", "file_extensions": ["exe"]},
        ),
        forward("web", name="app"),
    ]
    config = http(routes)
    data = config.model_dump(exclude_defaults=True)
    data["listeners"][0] |= {"firewall": firewall, **listener}
    return parse_config(data)


def test_address_rules_close_a_refused_client_s_connection_before_anything_else() -> None:
    config = firewalled({"methods": ["GET"]}, addresses={"deny": ["192.0.2.0/24"]})
    decision = ask(config, client_ip="192.0.2.7", path="/", host="x")
    assert decision.action.kind == "closed" and decision.route is None
    assert (
        decision.action.reason
        == "address rules refuse the client: 192.0.2.7 is in deny 192.0.2.0/24"
    )
    [policy] = decision.policies
    assert (policy.kind, policy.detail["refused"]) == ("addresses", True)
    let_in = ask(config, client_ip="198.51.100.1", host="x")
    assert let_in.action.kind == "forward"
    assert let_in.policies[0].summary == "address rules let 198.51.100.1 in"


def test_l7_rules_that_match_in_block_mode_answer_403_naming_them() -> None:
    config = firewalled(
        {
            "methods": ["GET"],
            "protocol": True,
            "rules": [
                {
                    "name": "sqli",
                    "target": "query",
                    "transforms": ["url_decode", "lowercase"],
                    "regex": "union\\s+select",
                }
            ],
        }
    )
    decision = ask(config, method="POST", path="/?q=1%20UNION+Select", host="x")
    assert (decision.action.kind, decision.action.status) == ("refused", 403)
    assert decision.action.body == "blocked by the firewall\n"
    assert decision.action.reason == "the firewall blocks it (rules: methods, sqli)"
    policy = {p.kind: p for p in decision.policies}["firewall"]
    assert policy.detail == {"mode": "block", "matched": ["methods", "sqli"]}
    missing_host = ask(config, path="/")
    assert {p.kind: p for p in missing_host.policies}["firewall"].summary == (
        "L7 rules match: protocol (no Host header) (blocked: 403)"
    )
    assert ask(config, path="/?q=I+love+union+and+selecting", host="x").action.kind == "forward"


def test_detect_mode_and_a_switched_off_route_forward_and_say_so() -> None:
    config = firewalled({"methods": ["GET"]})
    watched = ask(config, path="/watched/setup.EXE", host="x")
    assert watched.action.clusters() == ["b"]
    assert {p.kind: p for p in watched.policies}["firewall"].summary == (
        "L7 rules match: file_extensions (detect: let through)"
    )
    off = ask(config, method="DELETE", path="/open", host="x")
    assert off.action.clusters() == ["a"]
    assert {p.kind: p for p in off.policies}["firewall"].summary == (
        "the firewall is switched off on this route"
    )


def test_crs_inspection_is_the_verdict_service_s_and_may_answer_403() -> None:
    config = firewalled({"mode": "detect", "crs": {"failure": "open"}})
    detect = {p.kind: p for p in ask(config, path="/?id=1'", host="x").policies}["crs"]
    assert detect.may_answer is None and detect.detail["paranoia_level"] == 1
    blocking = firewalled({"crs": {"paranoia_level": 2}})
    decision = ask(blocking, path="/?id=1'", host="x")
    assert decision.action.kind == "forward"
    crs = {p.kind: p for p in decision.policies}["crs"]
    assert crs.may_answer == 403
    assert crs.summary.startswith("OWASP CRS at paranoia level 2 (anomaly threshold 5)")
