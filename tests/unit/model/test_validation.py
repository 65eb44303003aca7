"""Every validation rule: the base config is valid; each change below is refused, and the
error names the field's path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from controlplane.model import ConfigError, parse_config

from .conftest import CERTS, base_config

Change = Callable[[dict[str, Any]], None]


def route(config: dict[str, Any], i: int = 0) -> dict[str, Any]:
    return config["listeners"][0]["virtual_hosts"][0]["routes"][i]


def test_the_base_config_is_valid() -> None:
    parse_config(base_config())


INVALID: dict[str, tuple[Change, str, str]] = {
    "unknown cluster": (
        lambda c: route(c).update(backends=[{"cluster": "apii"}]),
        "listeners[0].virtual_hosts[0].routes[0].backends[0].cluster",
        "no cluster named 'apii'",
    ),
    "unknown default cluster": (
        lambda c: c["listeners"][2].update(default_cluster="nope"),
        "listeners[2].default_cluster",
        "no cluster named 'nope'",
    ),
    "unknown sni cluster": (
        lambda c: c["listeners"][3]["sni_routes"][0].update(cluster="nope"),
        "listeners[3].sni_routes[0].cluster",
        "no cluster named 'nope'",
    ),
    "unknown field": (
        lambda c: c["clusters"][0].update(endpionts=[]),
        "clusters[0].endpionts",
        "unknown field",
    ),
    "missing field": (
        lambda c: c["clusters"][0].pop("endpoints"),
        "clusters[0].endpoints",
        "required field is missing",
    ),
    "duplicate listener name": (
        lambda c: c["listeners"][1].update(name="web"),
        "listeners[1].name",
        "already named 'web'",
    ),
    "duplicate cluster name": (
        lambda c: c["clusters"][1].update(name="api"),
        "clusters[1].name",
        "already named 'api'",
    ),
    "duplicate route name": (
        lambda c: route(c, 1).update(name="api"),
        "listeners[0].virtual_hosts[0].routes[1].name",
        "already named 'api'",
    ),
    "bad name": (
        lambda c: c["clusters"][0].update(name="Api Servers"),
        "clusters[0].name",
        "should match pattern",
    ),
    "negative weight": (
        lambda c: route(c)["backends"][0].update(weight=-1),
        "listeners[0].virtual_hosts[0].routes[0].backends[0].weight",
        "greater than or equal to 0",
    ),
    "zero duration": (
        lambda c: c["clusters"][0].update(connect_timeout="0s"),
        "clusters[0].connect_timeout",
        "must be at least 1ms",
    ),
    "duration past a day": (
        lambda c: c["clusters"][0].update(connect_timeout="25h"),
        "clusters[0].connect_timeout",
        "must be at most 24h",
    ),
    "a cluster twice in a route whose backends change headers": (
        lambda c: route(c)["backends"].extend(
            [dict(route(c)["backends"][0], request_headers={"set": {"x-canary": "1"}})]
        ),
        "listeners[0].virtual_hosts[0].routes[0].backends[1]",
        "already a backend of this route",
    ),
    "a mirror of a redirect": (
        lambda c: route(c).update(
            backends=None, redirect={"host": "example.com"}, mirrors=[{"cluster": "web"}]
        ),
        "listeners[0].virtual_hosts[0].routes[0]",
        "has no backends",
    ),
    "prefix_rewrite and path_rewrite": (
        lambda c: route(c).update(prefix_rewrite="/a", path_rewrite="/b"),
        "listeners[0].virtual_hosts[0].routes[0]",
        "at most one of prefix_rewrite, path_rewrite",
    ),
    "cors max_age in milliseconds": (
        lambda c: route(c).update(
            cors={"allow_origins": [{"exact": "https://a.example"}], "max_age": "1500ms"}
        ),
        "listeners[0].virtual_hosts[0].routes[0].cors",
        "whole number of seconds",
    ),
    "cors origin with a path": (
        lambda c: route(c).update(cors={"allow_origins": [{"exact": "https://a.example/x"}]}),
        "listeners[0].virtual_hosts[0].routes[0].cors.allow_origins[0].exact",
        "should match pattern",
    ),
    "zero endpoint weight": (
        lambda c: c["clusters"][0]["endpoints"][0].update(weight=0),
        "clusters[0].endpoints[0].weight",
        "greater than or equal to 1",
    ),
    "empty backends": (
        lambda c: route(c).update(backends=[]),
        "listeners[0].virtual_hosts[0].routes[0].backends",
        "at least 1 item",
    ),
    "port out of range": (
        lambda c: c["listeners"][0].update(address="127.0.0.1:70000"),
        "listeners[0].address",
        "port must be a number from 1 to 65535",
    ),
    "listener on a host name": (
        lambda c: c["listeners"][0].update(address="localhost:8080"),
        "listeners[0].address",
        "binds an IP address",
    ),
    "endpoint without port": (
        lambda c: c["clusters"][0]["endpoints"][0].update(address="10.0.0.1"),
        "clusters[0].endpoints[0].address",
        "host:port",
    ),
    "same address twice in a group": (
        lambda c: c["listeners"][1].update(address="127.0.0.1:8080"),
        "listeners[1].address",
        "clashes with listener 'web'",
    ),
    "wildcard address overlaps": (
        lambda c: c["listeners"][2].update(address="0.0.0.0:8080"),
        "listeners[2].address",
        "clashes with listener 'web'",
    ),
    "regex that does not compile": (
        lambda c: route(c)["match"].update(path={"regex": "/api/("}),
        "listeners[0].virtual_hosts[0].routes[0].match.path.regex",
        "invalid regex",
    ),
    "regex with lookahead": (
        lambda c: route(c)["match"].update(path={"regex": "/(?!admin).*"}),
        "listeners[0].virtual_hosts[0].routes[0].match.path.regex",
        "not supported by Envoy",
    ),
    "header regex with backreference": (
        lambda c: route(c)["match"].update(headers=[{"name": "x-a", "regex": r"(a)\1"}]),
        "listeners[0].virtual_hosts[0].routes[0].match.headers[0].regex",
        "backreferences",
    ),
    "two path kinds": (
        lambda c: route(c)["match"].update(path={"prefix": "/a", "exact": "/a"}),
        "listeners[0].virtual_hosts[0].routes[0].match.path",
        "exactly one of exact, prefix, regex",
    ),
    "two actions": (
        lambda c: route(c).update(direct_response={"status": 200}),
        "listeners[0].virtual_hosts[0].routes[0]",
        "exactly one of backends, redirect, direct_response",
    ),
    "prefix rewrite without prefix": (
        lambda c: route(c).update(match={"path": {"exact": "/a"}}, prefix_rewrite="/b"),
        "listeners[0].virtual_hosts[0].routes[0]",
        "prefix_rewrite needs a prefix path match",
    ),
    "duration without unit": (
        lambda c: route(c).update(timeout="5"),
        "listeners[0].virtual_hosts[0].routes[0].timeout",
        "duration",
    ),
    "duplicate domain": (
        lambda c: c["listeners"][0]["virtual_hosts"].append(
            {
                "name": "other",
                "domains": ["example.com"],
                "routes": [{"backends": [{"cluster": "web"}]}],
            }
        ),
        "listeners[0].virtual_hosts[1].domains[0]",
        "already served by virtual host 'site'",
    ),
    "upper-case domain": (
        lambda c: c["listeners"][0]["virtual_hosts"][0].update(domains=["Example.com"]),
        "listeners[0].virtual_hosts[0].domains[0]",
        "should match pattern",
    ),
    "header value with %": (
        lambda c: route(c).update(request_headers={"set": {"x-a": "%DOWNSTREAM_REMOTE_ADDRESS%"}}),
        "listeners[0].virtual_hosts[0].routes[0].request_headers.set.x-a",
        "must not contain '%'",
    ),
    "http listener without routes": (
        lambda c: c["listeners"][0].update(virtual_hosts=[]),
        "listeners[0]",
        "needs virtual_hosts",
    ),
    "tcp listener with routes": (
        lambda c: c["listeners"][2].update(virtual_hosts=c["listeners"][0]["virtual_hosts"]),
        "listeners[2]",
        "L4 and cannot have virtual_hosts",
    ),
    "tcp listener without cluster": (
        lambda c: c["listeners"][2].pop("default_cluster"),
        "listeners[2]",
        "needs default_cluster",
    ),
    "https without certificates": (
        lambda c: c["listeners"][1].update(certificates=[]),
        "listeners[1]",
        "needs certificates",
    ),
    "request id on an L4 listener": (
        lambda c: c["listeners"][2].update(request_id=True),
        "listeners[2]",
        "cannot see headers",
    ),
    "http route to a tcp cluster": (
        lambda c: route(c).update(backends=[{"cluster": "postgres"}]),
        "listeners[0].virtual_hosts[0].routes[0].backends[0].cluster",
        "needs an http1 or http2 cluster",
    ),
    "tcp listener to an http cluster": (
        lambda c: c["listeners"][2].update(default_cluster="api"),
        "listeners[2].default_cluster",
        "needs a tcp cluster",
    ),
    "tcp cluster hashing on a header": (
        lambda c: c["clusters"][2].update(lb_policy="ring_hash", hash_on={"header": "x-user"}),
        "clusters[2].hash_on",
        "L4 sees no HTTP",
    ),
    "ring hash without key": (
        lambda c: c["clusters"][0].update(lb_policy="ring_hash"),
        "clusters[0]",
        "needs hash_on",
    ),
    "hash key without hashing": (
        lambda c: c["clusters"][0].update(hash_on={"source_ip": True}),
        "clusters[0]",
        "needs lb_policy ring_hash or maglev",
    ),
    "two hash keys": (
        lambda c: c["clusters"][0].update(
            lb_policy="maglev", hash_on={"source_ip": True, "header": "x-user"}
        ),
        "clusters[0].hash_on",
        "exactly one of source_ip, header, cookie",
    ),
    "clusters of one route hash differently": (
        lambda c: (
            c["clusters"][0].update(lb_policy="ring_hash", hash_on={"header": "x-user"}),
            route(c).update(backends=[{"cluster": "api"}, {"cluster": "web"}]),
        ),
        "listeners[0].virtual_hosts[0].routes[0].backends",
        "same hash_on",
    ),
    "same endpoint twice": (
        lambda c: c["clusters"][0]["endpoints"].append({"address": "127.0.0.1:9001"}),
        "clusters[0].endpoints[1].address",
        "listed more than once",
    ),
    "health check timeout longer than interval": (
        lambda c: c["clusters"][0].update(health_check={"interval": "1s", "timeout": "2s"}),
        "clusters[0].health_check",
        "timeout must not exceed interval",
    ),
    "health check status out of range": (
        lambda c: c["clusters"][0].update(health_check={"expected_statuses": [700]}),
        "clusters[0].health_check",
        "not an HTTP status",
    ),
    "certificate given as a file path": (
        lambda c: c["listeners"][1]["certificates"][0].update(cert="/etc/passwd"),
        "listeners[1].certificates[0].cert",
        "certificates and keys are inline PEM",
    ),
    "key given as a device path": (
        lambda c: c["listeners"][1]["certificates"][0].update(key="/dev/zero"),
        "listeners[1].certificates[0].key",
        "certificates and keys are inline PEM",
    ),
    "PEM followed by something else": (
        lambda c: c["listeners"][1]["certificates"][0].update(
            cert=(CERTS / "example.com.crt").read_text() + "lua-load /tmp/x.lua\n"
        ),
        "listeners[1].certificates[0].cert",
        "not PEM text",
    ),
    "PEM text over the size limit": (
        lambda c: c["listeners"][1]["certificates"][0].update(
            cert=(CERTS / "example.com.crt").read_text() * 120
        ),
        "listeners[1].certificates[0].cert",
        "limited to 65536 characters",
    ),
    "certificate that is not PEM": (
        lambda c: c["listeners"][1]["certificates"][0].update(
            cert="-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"
        ),
        "listeners[1].certificates[0]",
        "do not load together",
    ),
    "key of another certificate": (
        lambda c: c["listeners"][1]["certificates"][0].update(
            key=(CERTS / "other.test.key").read_text()
        ),
        "listeners[1].certificates[0]",
        "do not load together",
    ),
    "duplicate sni name": (
        lambda c: c["listeners"][3]["sni_routes"].append(
            {"server_names": ["db.example.com"], "cluster": "postgres"}
        ),
        "listeners[3].sni_routes[1].server_names[0]",
        "appears twice",
    ),
    "CONNECT is not routed by path": (
        lambda c: route(c)["match"].update(method="CONNECT"),
        "listeners[0].virtual_hosts[0].routes[0].match.method",
        "Input should be",
    ),
    "adding a second Host": (
        lambda c: route(c).update(request_headers={"add": {"host": "x"}}),
        "listeners[0].virtual_hosts[0].routes[0]",
        "exactly one Host",
    ),
    "removing Host": (
        lambda c: route(c).update(request_headers={"remove": ["host"]}),
        "listeners[0].virtual_hosts[0].routes[0]",
        "exactly one Host",
    ),
    "Host on a response": (
        lambda c: route(c).update(response_headers={"set": {"host": "x"}}),
        "listeners[0].virtual_hosts[0].routes[0]",
        "Host is a request header",
    ),
    "sni that matches anything": (
        lambda c: c["listeners"][3]["sni_routes"][0].update(server_names=["*"]),
        "listeners[3].sni_routes[0].server_names[0]",
        "should match pattern",
    ),
    "certificate name with an inner wildcard": (
        lambda c: c["listeners"][1]["certificates"][0].update(server_names=["a.*.example.com"]),
        "listeners[1].certificates[0].server_names[0]",
        "should match pattern",
    ),
    "group naming an unknown listener": (
        lambda c: c.update(node_groups=[{"name": "edge", "listeners": ["nope"]}]),
        "node_groups[0].listeners[0]",
        "no listener named 'nope'",
    ),
    "duplicate group": (
        lambda c: c.update(
            node_groups=[{"name": "a", "listeners": ["web"]}, {"name": "a", "listeners": ["db"]}]
        ),
        "node_groups[1].name",
        "already named 'a'",
    ),
}


@pytest.mark.parametrize("case", list(INVALID), ids=list(INVALID))
def test_invalid_config_is_refused_with_the_field_path(case: str, config: dict[str, Any]) -> None:
    change, path, message = INVALID[case]
    change(config)
    with pytest.raises(ConfigError) as refused:
        parse_config(config)
    lines = [str(issue) for issue in refused.value.issues]
    assert any(line.startswith(f"{path}: ") and message in line for line in lines), lines


def test_listeners_of_different_groups_may_share_an_address(config: dict[str, Any]) -> None:
    config["listeners"][1]["address"] = "127.0.0.1:8080"
    config["node_groups"] = [
        {"name": "a", "listeners": ["web", "db"]},
        {"name": "b", "listeners": ["secure", "passthrough"]},
    ]
    parse_config(config)


def test_every_problem_is_reported_at_once(config: dict[str, Any]) -> None:
    route(config).update(backends=[{"cluster": "x"}])
    config["clusters"][1]["name"] = "api"
    with pytest.raises(ConfigError) as refused:
        parse_config(config)
    assert len(refused.value.issues) >= 2


def test_inline_pem_certificates_are_accepted(config: dict[str, Any]) -> None:
    cert = config["listeners"][1]["certificates"][0]
    cert["cert"] = (CERTS / "example.com.crt").read_text()
    cert["key"] = (CERTS / "example.com.key").read_text()
    parse_config(config)
