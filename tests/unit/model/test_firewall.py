"""Firewall policies in the model: what they may hold, where they apply, which firewall
checks a route, and address lists read from files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controlplane.model import ConfigError, Firewall, effective_firewall, load_file, parse_config

VHOSTS = "[{name: s, domains: ['*'], routes: [{direct_response: {status: 200}}]}]"


def config(listener: dict[str, Any], routes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    base = {
        "name": "web",
        "address": "127.0.0.1:8080",
        "protocol": "http",
        "virtual_hosts": [
            {
                "name": "site",
                "domains": ["*"],
                "routes": routes or [{"direct_response": {"status": 200}}],
            }
        ],
    }
    return {"listeners": [{**base, **listener}]}


def refusal(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as refused:
        parse_config(data)
    return str(refused.value)


def test_cidrs_are_held_as_networks() -> None:
    parsed = parse_config(config({"addresses": {"deny": ["192.0.2.7", "2001:DB8::/32"]}}))
    assert parsed.listeners[0].addresses.deny == ["192.0.2.7/32", "2001:db8::/32"]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10.0.0.1/8", "host bits zero"),
        ("10.0.0.0/33", "not an address"),
        ("fe80::1%eth0", "not an address"),
        ("example.com", "not an address"),
        ("10.0.0.0/8\n", "control character"),
    ],
)
def test_a_cidr_is_an_address_or_a_range_with_its_host_bits_zero(value: str, message: str) -> None:
    text = refusal(config({"addresses": {"deny": [value]}}))
    assert "listeners[0].addresses.deny[0]" in text and message in text


def test_address_rules_need_a_list() -> None:
    assert "set allow, deny or both" in refusal(config({"addresses": {}}))


def test_address_rules_apply_to_l4_listeners_and_the_firewall_does_not() -> None:
    tcp = {
        "name": "db",
        "address": "127.0.0.1:5432",
        "protocol": "tcp",
        "default_cluster": "db",
        "addresses": {"allow": ["127.0.0.0/8"]},
    }
    data = {
        "listeners": [tcp],
        "clusters": [{"name": "db", "protocol": "tcp", "endpoints": [{"address": "127.0.0.1:1"}]}],
    }
    parse_config(data)
    tcp["firewall"] = {"methods": ["GET"]}
    assert "firewall is for http and https listeners" in refusal(data)


@pytest.mark.parametrize(
    ("firewall", "message"),
    [
        ({}, "a firewall needs rules or crs"),
        ({"enabled": False, "methods": ["GET"]}, "switched off"),
        ({"rules": [{"name": "r", "target": "header", "phrases": ["x"]}]}, "needs field"),
        ({"rules": [{"name": "r", "target": "query", "field": "q", "phrases": ["x"]}]}, "has none"),
        ({"rules": [{"name": "r", "target": "query"}]}, "exactly one of regex, phrases"),
        ({"rules": [{"name": "r", "target": "query", "regex": "(?=a)"}]}, "lookahead"),
        ({"rules": [{"name": "r", "target": "path", "phrases": [" x"]}]}, "leading or trailing"),
        ({"user_agents": [{"contains": "a", "regex": "b"}]}, "exactly one of contains, regex"),
        ({"file_extensions": [".exe"]}, "file_extensions[0]"),
        ({"crs": {"paranoia_level": 5}}, "paranoia_level"),
        ({"crs": {"max_body_bytes": 9000}}, "max_body_bytes"),
        (
            {
                "rules": [
                    {"name": "r", "target": "path", "phrases": ["x"]},
                    {"name": "r", "target": "query", "phrases": ["y"]},
                ]
            },
            "rule names repeat: r",
        ),
    ],
)
def test_what_a_firewall_may_hold(firewall: dict[str, Any], message: str) -> None:
    assert message in refusal(config({"firewall": firewall}))


def test_a_firewall_reads_back_as_it_was_dumped() -> None:
    for firewall in (Firewall(enabled=False), Firewall(methods=["GET"], crs={})):  # type: ignore[arg-type]
        assert Firewall.model_validate(firewall.model_dump()) == firewall


def test_one_verdict_service_per_listener() -> None:
    routes = [{"direct_response": {"status": 200}, "firewall": {"crs": {"failure": "open"}}}]
    text = refusal(config({"firewall": {"crs": {}}}, routes))
    assert "one verdict service per listener" in text


def test_a_route_s_firewall_replaces_the_listener_s_and_can_switch_it_off() -> None:
    listener = Firewall(methods=["GET"])
    own = Firewall(protocol=True)
    assert effective_firewall(listener, None) is listener
    assert effective_firewall(listener, own) is own
    assert effective_firewall(listener, Firewall(enabled=False)) is None
    assert effective_firewall(None, None) is None


def test_address_lists_may_be_files_of_one_cidr_a_line(tmp_path: Path) -> None:
    (tmp_path / "country.txt").write_text("# a country\n192.0.2.0/24\n\n198.51.100.0/24 # more\n")
    (tmp_path / "lb.yaml").write_text(
        "listeners:\n"
        "  - name: web\n    address: 127.0.0.1:8080\n    protocol: http\n"
        "    addresses: {deny: [203.0.113.9, {file: country.txt}]}\n"
        f"    virtual_hosts: {VHOSTS}\n"
    )
    loaded = load_file(tmp_path / "lb.yaml")
    assert loaded.listeners[0].addresses.deny == [  # type: ignore[union-attr]
        "203.0.113.9/32",
        "192.0.2.0/24",
        "198.51.100.0/24",
    ]


def test_a_missing_address_file_is_named_with_its_entry(tmp_path: Path) -> None:
    (tmp_path / "lb.yaml").write_text(
        "listeners:\n"
        "  - name: web\n    address: 127.0.0.1:8080\n    protocol: http\n"
        "    addresses: {allow: [{file: nowhere.txt}]}\n"
        f"    virtual_hosts: {VHOSTS}\n"
    )
    with pytest.raises(ConfigError) as refused:
        load_file(tmp_path / "lb.yaml")
    assert "listeners[0].addresses.allow[0]: nowhere.txt: not a regular file" in str(refused.value)
