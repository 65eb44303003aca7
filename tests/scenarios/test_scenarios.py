"""Every scenario loads and validates; then each plays on real Envoy (SotW, Delta) and HAProxy.

One proxy process per target serves the whole module: `apply` replaces its config for each
scenario. A target whose module cannot be imported fails each of its tests, never skips.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.target import Target

from .loading import ScenarioError, load_scenario, scenario_files
from .runner import play

CASES = Path(__file__).parent / "cases"
GATEWAY_API = CASES / "gateway-api"
FILES = scenario_files(CASES) + scenario_files(GATEWAY_API)


def _played(path: Path) -> bool:
    """Whether the file has requests to play (a file that does not load is played, to fail)."""
    try:
        return load_scenario(path).playable
    except ScenarioError:
        return True


PLAYED = [path for path in FILES if _played(path)]

TARGETS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "envoy-sotw": ("tests.harness.targets_envoy", "EnvoyTarget", {"mode": "sotw"}),
    "envoy-delta": ("tests.harness.targets_envoy", "EnvoyTarget", {"mode": "delta"}),
    "haproxy": ("tests.harness.targets_haproxy", "HAProxyTarget", {}),
}
MARKS = {"envoy-sotw": pytest.mark.envoy, "envoy-delta": pytest.mark.envoy}


def test_there_are_enough_scenarios() -> None:
    assert len(FILES) >= 14


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_scenario_loads_and_its_config_validates(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.requests or scenario.not_expressible


@pytest.fixture(
    scope="module",
    params=[pytest.param(name, marks=MARKS.get(name, pytest.mark.haproxy)) for name in TARGETS],
)
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """One running proxy for every scenario of the module."""
    module_name, class_name, arguments = TARGETS[request.param]
    try:
        factory = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        pytest.fail(f"target {request.param}: cannot import {module_name}.{class_name}: {exc}")
    proxy: Target = factory(**arguments)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.mark.parametrize("path", PLAYED, ids=[p.stem for p in PLAYED])
def test_scenario_plays(target: Target, path: Path) -> None:
    play(load_scenario(path), target)


def test_docs_report_how_many_gateway_api_cases_play_and_how_many_are_not_expressible() -> None:
    cases = [load_scenario(path) for path in scenario_files(GATEWAY_API)]
    played = sum(1 for case in cases if case.playable)
    docs = " ".join((Path(__file__).parents[2] / "docs" / "model.md").read_text().split())
    assert f"Of the {len(cases)} cases translated, {played} play" in docs
    assert f"{len(cases) - played} are not expressible" in docs
