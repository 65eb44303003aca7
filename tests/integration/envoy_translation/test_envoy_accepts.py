"""A real Envoy, fed by our xDS server, accepts the translation of every example and golden
input it can express (state of the world and delta), and runs it: no NACK, every type ACKed.
(An input refused for Envoy has its refusal as its golden: tests/golden/envoy/*.refused.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.model import Config, load_file, target_issues
from tests.harness.ports import free_port
from tests.harness.targets_envoy import EnvoyTarget

REPO = Path(__file__).resolve().parents[3]
INPUTS = [
    path
    for path in sorted((REPO / "examples").glob("*.yaml"))
    + sorted((REPO / "tests/golden").glob("*.yaml"))
    if not target_issues(load_file(path), "envoy")
]

pytestmark = pytest.mark.envoy


def on_free_ports(config: Config) -> Config:
    """The config with every listener on a free loopback port (examples bind :80, :443)."""
    listeners = [
        x.model_copy(update={"address": f"127.0.0.1:{free_port()}"}) for x in config.listeners
    ]
    return config.model_copy(update={"listeners": listeners})


@pytest.fixture(params=["sotw", "delta"])
def target(request: pytest.FixtureRequest) -> Iterator[EnvoyTarget]:
    envoy = EnvoyTarget(request.param)
    envoy.start()
    try:
        yield envoy
    finally:
        envoy.stop()


@pytest.mark.parametrize("source", INPUTS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_envoy_accepts_translation(target: EnvoyTarget, source: Path) -> None:
    config = on_free_ports(load_file(source))
    for group in config.group_names():
        # ACKs only: endpoints named by host (two-tier's `api-1`) do not resolve here.
        target.wait_running(target.publish(config, group), warm=False)
        assert target.envoy is not None
        dumped = {listener["name"] for listener in _dynamic_listeners(target.envoy.config_dump())}
        assert target.resources is not None
        assert dumped == set(target.resources.listeners)


def _dynamic_listeners(dump: dict) -> list[dict]:
    for section in dump["configs"]:
        if section["@type"].endswith("ListenersConfigDump"):
            return [
                x.get("active_state", x.get("warming_state"))["listener"]
                for x in section.get("dynamic_listeners", [])
                if "active_state" in x or "warming_state" in x
            ]
    return []


def test_envoy_runs_configs_one_after_another() -> None:
    envoy = EnvoyTarget("sotw")
    envoy.start()
    try:
        for name in ("examples/quickstart.yaml", "examples/two-tier.yaml"):
            config = on_free_ports(load_file(REPO / name))
            for group in config.group_names():
                envoy.wait_running(envoy.publish(config, group), warm=False, timeout=3)
    finally:
        envoy.stop()
