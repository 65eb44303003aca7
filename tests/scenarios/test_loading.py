"""The loader refuses faulty scenarios with the file and the field at fault."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from .loading import ScenarioError, load_scenario


def scenario(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "case",
        "description": "A request reaches the only backend.",
        "backends": [{"name": "app"}],
        "config": {
            "listeners": [
                {
                    "name": "web",
                    "address": "0.0.0.0:80",
                    "protocol": "http",
                    "virtual_hosts": [
                        {
                            "name": "site",
                            "domains": ["*"],
                            "routes": [{"backends": [{"cluster": "app"}]}],
                        }
                    ],
                }
            ],
            "clusters": [{"name": "app", "endpoints": [{"address": "${app}"}]}],
        },
        "requests": [{"listener": "web", "expect": {"backend": "app"}}],
    }
    data.update(changes)
    return data


def problems(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / "case.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ScenarioError) as raised:
        load_scenario(path)
    text = str(raised.value)
    assert text.startswith(str(path))
    return text


def test_a_good_scenario_loads(tmp_path: Path) -> None:
    path = tmp_path / "case.yaml"
    path.write_text(yaml.safe_dump(scenario()))
    assert load_scenario(path).backends[0].name == "app"


def test_unknown_fields_are_named_with_their_path(tmp_path: Path) -> None:
    data = scenario(requests=[{"listener": "web", "expect": {"backnd": "app"}}])
    assert "requests[0].expect.backnd: unknown field" in problems(tmp_path, data)


def test_config_problems_are_prefixed_with_config(tmp_path: Path) -> None:
    data = scenario()
    data["config"]["clusters"][0]["lb_policy"] = "fastest"
    assert "config.clusters[0].lb_policy" in problems(tmp_path, data)


def test_unknown_backend_references(tmp_path: Path) -> None:
    data = scenario()
    data["config"]["clusters"][0]["endpoints"][0]["address"] = "${ghost}"
    assert "config.clusters[0].endpoints[0].address: no backend named 'ghost'" in problems(
        tmp_path, data
    )
    data = scenario(requests=[{"listener": "web", "expect": {"backend": "ghost"}}])
    assert "requests[0].expect: no backend named 'ghost'" in problems(tmp_path, data)


def test_steps_must_fit_their_listener(tmp_path: Path) -> None:
    data = scenario(requests=[{"listener": "nope"}, {"listener": "web", "kind": "tcp"}])
    text = problems(tmp_path, data)
    assert "requests[0].listener: the group's config has no listener named 'nope'" in text
    assert "requests[1].kind: a tcp step cannot go to a http listener" in text


def test_shares_need_a_statistically_safe_tolerance(tmp_path: Path) -> None:
    step = {"listener": "web", "count": 100, "expect": {"shares": {"app": 0.5}, "tolerance": 0.05}}
    assert "expect.shares.app: tolerance 0.05 is less than 4" in problems(
        tmp_path, scenario(requests=[step])
    )


def test_what_a_proxy_cannot_express_must_be_declared(tmp_path: Path) -> None:
    data = scenario()
    data["config"]["clusters"][0].update(lb_policy="maglev", hash_on={"header": "x-user"})
    assert "declare it in rejected_by" in problems(tmp_path, data)
    data["rejected_by"] = {
        "target": "haproxy",
        "path": "clusters[0].hash_on",
        "message_contains": "x",
    }
    assert "rejected_by: haproxy should refuse clusters[0].hash_on" in problems(tmp_path, data)


def test_name_must_match_the_file(tmp_path: Path) -> None:
    assert "differs from the file name" in problems(tmp_path, scenario(name="other"))
