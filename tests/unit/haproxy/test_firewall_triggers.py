"""How HAProxy checks a firewall's triggers: ACLs under one name per set of triggers, their
phrases in pattern files, each phrase from the first character such a file keeps (a value
holding the phrase holds that rest too), and a phrase such a file cannot hold watching the
whole value. Real HAProxy plays them in the firewall-l7-triggers scenario."""

from __future__ import annotations

from typing import Any

from controlplane.haproxy.render import render
from controlplane.model import parse_config


def _render(firewall: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    config = parse_config(
        {
            "listeners": [
                {
                    "name": "web",
                    "address": "127.0.0.1:8080",
                    "protocol": "http",
                    "firewall": firewall,
                    "virtual_hosts": [
                        {
                            "name": "site",
                            "domains": ["*"],
                            "routes": [{"direct_response": {"status": 200}}],
                        }
                    ],
                }
            ]
        }
    )
    bundle = render(config, "default")
    acls = [line.strip() for line in bundle.cfg.splitlines() if "acl fw_triggers" in line]
    return acls, {name: text for name, text in bundle.files.items() if name.endswith(".pat")}


def test_phrases_go_to_pattern_files_from_the_first_character_a_file_keeps() -> None:
    rule = {"name": "tags", "target": "query", "phrases": ["#tag", "# a b", "plain"]}
    acls, files = _render({"rules": [rule]})
    assert acls == [f"acl fw_triggers_1 url -m sub -i -f {next(iter(files))}"]
    assert list(files.values()) == ["a b\ntag\nplain\n"]


def test_a_phrase_a_pattern_file_cannot_hold_watches_the_whole_value() -> None:
    acls, files = _render({"user_agents": [{"contains": "##"}]})
    assert acls == ["acl fw_triggers_1 req.hdr_cnt(user-agent) gt 0"]
    assert files == {}


def test_a_rule_the_proxies_cannot_prefilter_fires_for_every_request() -> None:
    acls, _ = _render({"rules": [{"name": "b", "target": "body", "phrases": ["<script"]}]})
    assert acls == ["acl fw_triggers_1 always_true"]
