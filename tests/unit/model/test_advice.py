"""`advise`: the article's decision framework, one rule per test on a small config, and the
article's own nginx example with the answer it should get."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controlplane.model import load_file, parse_config
from controlplane.model.advice import Advice, ListenerAdvice, advise, passthrough_traps

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def one_http(route: dict[str, Any] | None = None, **listener: Any) -> dict[str, Any]:
    return {
        "name": "web",
        "address": "127.0.0.1:8080",
        "protocol": "http",
        "virtual_hosts": [
            {
                "name": "site",
                "domains": ["*"],
                "routes": [route or {"backends": [{"cluster": "app"}]}],
            }
        ],
        **listener,
    }


def advice_for(
    listeners: list[dict[str, Any]], clusters: list[dict[str, Any]] | None = None
) -> Advice:
    return advise(
        parse_config(
            {
                "listeners": listeners,
                "clusters": clusters
                or [{"name": "app", "endpoints": [{"address": "127.0.0.1:9000"}]}],
            }
        )
    )


def only(advice: Advice) -> ListenerAdvice:
    [listener] = advice.listeners
    return listener


def features(listener: ListenerAdvice) -> set[str]:
    return {n.feature for n in listener.needs if n.hard}


def test_an_http_listener_that_routes_nothing_could_run_at_l4() -> None:
    web = only(advice_for([one_http()]))
    assert web.layer == "L7" and web.could_run_at_l4
    assert web.suggestion.startswith("could run at L4: protocol tcp with default_cluster app")
    assert [n.feature for n in web.needs] == ["client address for backends"]
    assert "send_proxy_protocol" in web.suggestion


@pytest.mark.parametrize(
    ("route", "listener", "feature"),
    [
        ({"match": {"path": {"prefix": "/api"}}}, {}, "URL routing"),
        ({"match": {"headers": [{"name": "x-canary", "exact": "1"}]}}, {}, "header routing"),
        ({"match": {"cookies": [{"name": "beta", "present": True}]}}, {}, "cookie routing"),
        ({"match": {"method": "POST"}}, {}, "method routing"),
        ({"request_headers": {"set": {"x-env": "prod"}}}, {}, "request modification"),
        ({"prefix_rewrite": "/v2"}, {}, "request modification"),
        ({"retries": {"attempts": 2}}, {}, "retries"),
        ({"timeout": "2s"}, {}, "per-route timeout"),
        ({}, {"request_id": True}, "request modification"),
        ({"rate_limit": {"requests": 10, "per": "1s"}}, {}, "request rate limits"),
    ],
)
def test_each_l7_feature_is_named_with_its_field(
    route: dict[str, Any], listener: dict[str, Any], feature: str
) -> None:
    web = only(advice_for([one_http({"backends": [{"cluster": "app"}], **route}, **listener)]))
    assert feature in features(web)
    assert not web.could_run_at_l4
    assert web.suggestion.startswith("L7 is needed for: ")


def test_answers_from_the_proxy_and_host_routing_need_l7() -> None:
    redirect = {"redirect": {"scheme": "https"}}
    web = only(advice_for([one_http(redirect)]))
    assert "answers from the proxy" in features(web)
    named = one_http()
    named["virtual_hosts"][0]["domains"] = ["api.example.com"]
    assert "Host routing" in features(only(advice_for([named])))


def test_cookie_affinity_canary_and_grpc_need_l7() -> None:
    clusters = [
        {
            "name": "app",
            "endpoints": [{"address": "127.0.0.1:9000"}],
            "lb_policy": "ring_hash",
            "hash_on": {"cookie": {"name": "sticky"}},
        },
        {
            "name": "canary",
            "endpoints": [{"address": "127.0.0.1:9001"}],
            "lb_policy": "ring_hash",
            "hash_on": {"cookie": {"name": "sticky"}},
        },
    ]
    split = {"backends": [{"cluster": "app", "weight": 95}, {"cluster": "canary", "weight": 5}]}
    web = only(advice_for([one_http(split)], clusters))
    assert {"cookie/header affinity", "per-request canary split"} <= features(web)
    grpc = [{"name": "app", "protocol": "http2", "endpoints": [{"address": "127.0.0.1:9000"}]}]
    assert "gRPC / HTTP/2 stream balancing" in features(only(advice_for([one_http()], grpc)))


def test_tls_termination_needs_l7() -> None:
    advice = advise(load_file(EXAMPLES / "nginx-article.yaml"))
    assert "TLS termination" in features(advice.listeners[0])


def test_the_articles_nginx_example_gets_its_expected_answer() -> None:
    """L7, for URL routing (/api/, /static/) and TLS termination (listen 443 ssl); no traps;
    a two-tier layout fits, with TLS passed through the L4 tier to the L7 group."""
    advice = advise(load_file(EXAMPLES / "nginx-article.yaml"))
    [https] = advice.listeners
    assert (https.layer, https.could_run_at_l4) == ("L7", False)
    assert https.suggestion == "L7 is needed for: URL routing, TLS termination"
    assert [n.detail for n in https.needs if n.feature == "URL routing"] == [
        "path /api",
        "path /static",
    ]
    assert https.traps == []
    tiers = advice.two_tier
    assert (tiers.fits, tiers.in_place) == (True, False)
    assert tiers.groups == {"l4": ["https-edge"], "l7": ["https"]}
    assert "TLS passes through the L4 tier" in tiers.reason


def test_the_two_tier_example_is_in_place_with_its_groups() -> None:
    advice = advise(load_file(EXAMPLES / "two-tier.yaml"))
    edge, web = advice.listeners
    assert (edge.layer, edge.could_run_at_l4) == ("L4", True)
    assert web.layer == "L7" and "URL routing" in features(web)
    assert advice.two_tier.in_place
    assert advice.two_tier.groups == {"l4": ["edge"], "l7": ["web"]}


def test_only_l4_listeners_need_no_l7_tier() -> None:
    tcp = {"name": "db", "address": "127.0.0.1:5432", "protocol": "tcp", "default_cluster": "pg"}
    clusters = [{"name": "pg", "protocol": "tcp", "endpoints": [{"address": "127.0.0.1:5433"}]}]
    advice = advice_for([tcp], clusters)
    assert only(advice).suggestion == (
        "L4 fits: it sees addresses and ports and nothing in it asks for more"
    )
    assert not advice.two_tier.fits


def test_trap_grpc_behind_a_tcp_listener() -> None:
    tcp = {"name": "rpc", "address": "127.0.0.1:7000", "protocol": "tcp", "default_cluster": "raw"}
    clusters = [
        {"name": "raw", "protocol": "tcp", "endpoints": [{"address": "127.0.0.1:50051"}]},
    ]
    [trap] = only(advice_for([tcp], clusters)).traps
    assert trap.kind == "grpc-behind-l4"
    assert "every call of a client's HTTP/2 connection goes to the one backend" in trap.message


def test_trap_source_ip_affinity_behind_nat() -> None:
    clusters = [
        {
            "name": "app",
            "endpoints": [{"address": "127.0.0.1:9000"}],
            "lb_policy": "ring_hash",
            "hash_on": {"source_ip": True},
        }
    ]
    [trap] = only(advice_for([one_http()], clusters)).traps
    assert (trap.kind, trap.where) == ("source-ip-affinity-behind-nat", "clusters[0].hash_on")
    assert "hash on a cookie" in trap.message


def test_trap_a_tier_that_loses_the_client_address() -> None:
    edge = {"name": "edge", "address": "127.0.0.1:80", "protocol": "tcp", "default_cluster": "l7"}
    clusters = [
        {"name": "l7", "protocol": "tcp", "endpoints": [{"address": "127.0.0.1:8080"}]},
        {"name": "app", "endpoints": [{"address": "127.0.0.1:9000"}]},
    ]
    advice = advice_for([edge, one_http()], clusters)
    [trap] = advice.listeners[1].traps
    assert trap.kind == "client-address-lost-between-tiers"
    assert advice.two_tier.in_place


def test_trap_tls_passthrough_asked_for_l7_features() -> None:
    data = {
        "listeners": [
            {
                "name": "pass",
                "address": "127.0.0.1:443",
                "protocol": "tls",
                "default_cluster": "app",
                "virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [{}]}],
            }
        ]
    }
    [trap] = passthrough_traps(data)
    assert (trap.kind, trap.where) == ("l7-asked-of-l4", "listeners[0]")
    assert "terminate TLS (protocol https with certificates)" in trap.message


def test_trap_a_proxy_protocol_only_one_tier_speaks() -> None:
    edge = {"name": "edge", "address": "127.0.0.1:80", "protocol": "tcp", "default_cluster": "l7"}
    clusters = [
        {
            "name": "l7",
            "protocol": "tcp",
            "send_proxy_protocol": True,
            "endpoints": [{"address": "127.0.0.1:8080"}],
        },
        {"name": "app", "endpoints": [{"address": "127.0.0.1:9000"}]},
    ]
    [trap] = advice_for([edge, one_http()], clusters).listeners[1].traps
    assert trap.kind == "proxy-protocol-mismatch"


def test_firewall_rules_and_crs_need_l7_and_address_rules_run_at_l4_too() -> None:
    firewall = {"user_agents": [{"contains": "sqlmap"}], "crs": {"paranoia_level": 2}}
    web = only(advice_for([one_http(firewall=firewall, addresses={"deny": ["192.0.2.0/24"]})]))
    assert {"L7 firewall rules", "CRS inspection"} <= features(web)
    needs = {n.feature: n for n in web.needs}
    assert needs["L7 firewall rules"].where == "listeners[0].firewall"
    assert needs["L7 firewall rules"].detail == "user_agents"
    assert needs["CRS inspection"].where == "listeners[0].firewall.crs"
    assert [(a.feature, a.where, a.detail) for a in web.at_l4] == [
        ("address rules", "listeners[0].addresses", "deny 1 range(s)")
    ]


def test_address_rules_alone_leave_a_listener_free_to_run_at_l4() -> None:
    web = only(advice_for([one_http(addresses={"allow": ["10.0.0.0/8"]})]))
    assert web.could_run_at_l4 and not features(web)
    assert [a.feature for a in web.at_l4] == ["address rules"]
    tcp = {
        "name": "db",
        "address": "127.0.0.1:5432",
        "protocol": "tcp",
        "default_cluster": "db",
        "addresses": {"deny": ["10.0.0.0/8", "2001:db8::/32"]},
    }
    clusters = [{"name": "db", "protocol": "tcp", "endpoints": [{"address": "127.0.0.1:5433"}]}]
    db = only(advice_for([tcp], clusters))
    assert db.layer == "L4" and [a.detail for a in db.at_l4] == ["deny 2 range(s)"]


def test_a_route_that_switches_the_firewall_off_needs_nothing_of_it() -> None:
    route = {"backends": [{"cluster": "app"}], "firewall": {"enabled": False}}
    web = only(advice_for([one_http(route)]))
    assert "L7 firewall rules" not in features(web)
