"""Real proxies run what the model accepts of hostile strings: HAProxy 2.6 (through the
manager: contract check, `haproxy -c`, start and reloads) and Envoy (over xDS: every type
ACKed).

The sample is fixed: for each group of hostile fragments, one config in which every string
field of the model holds, inserted into its benign value, every fragment of the group that the
model accepts there (in the middle of the value, or at its start). The property test in
`tests/unit/haproxy/test_hostile_strings.py` covers far more values without the proxies.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.haproxy.render import render
from controlplane.model import Certificate, Config, ConfigError, parse_config, target_issues
from controlplane.proxies.haproxy.manager import HAProxyManager
from tests.harness.hostile import Slot, fits, full_config, place, slots
from tests.harness.ports import free_port
from tests.harness.targets_envoy import EnvoyTarget

pytestmark = [pytest.mark.haproxy, pytest.mark.envoy]

GROUPS = [
    ["#", '"', "'", " ", "\\", "$HOME", "${HOME}", "%"],
    ["-i", "--", "{", "}", "|", ";", ",", "=", "&", "?", "(", ")"],
    ["\n", "\r\n", "\t", "\u0661\u0668", "é", "\u00a0", "\U0001f600", "`", "^", "@", "!", "~"],
]


def _acceptable(data: dict) -> bool:
    try:
        config = parse_config(data)
    except ConfigError:
        return False
    return not target_issues(config, "haproxy") and not target_issues(config, "envoy")


def _insert(value: str, fragment: str, slot: Slot, leading: bool) -> str:
    if slot.model is Certificate:
        return value[:-1] + fragment + value[-1:]
    at = 0 if leading else len(value) // 2
    return value[:at] + fragment + value[at:]


def hostile_sample() -> list[tuple[str, Config]]:
    """The configs the proxies are given: every slot holds what it accepts of each group."""
    ports = [free_port() for _ in range(5)]
    base = full_config(ports)
    del base["node_groups"]  # one group: one HAProxy and one Envoy run every listener
    sample = []
    for group in GROUPS:
        for leading in (False, True):
            data = base
            for slot in slots(base):
                value = slot.get(base)
                for fragment in group:
                    candidate = _insert(value, fragment, slot, leading)
                    if fits(place(data, slot, candidate), slot):
                        value = candidate
                if _acceptable(place(data, slot, value)):
                    data = place(data, slot, value)
            where = "leading" if leading else "inside"
            sample.append((f"{' '.join(map(repr, group))} {where}", parse_config(data)))
    return sample


@pytest.fixture(scope="module")
def sample() -> list[tuple[str, Config]]:
    configs = hostile_sample()
    assert len(configs) == SAMPLE_SIZE
    assert len({c.model_dump_json() for _, c in configs}) == SAMPLE_SIZE
    return configs


@pytest.fixture
def manager() -> Iterator[HAProxyManager]:
    workdir = Path(tempfile.mkdtemp(prefix="hap-", dir="/tmp"))
    haproxy = HAProxyManager(workdir)
    try:
        yield haproxy
    finally:
        haproxy.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def envoy() -> Iterator[EnvoyTarget]:
    target = EnvoyTarget("sotw")
    target.start()
    try:
        yield target
    finally:
        target.stop()


SAMPLE_SIZE = 2 * len(GROUPS)


def test_haproxy_runs_every_accepted_hostile_config(
    manager: HAProxyManager, sample: list[tuple[str, Config]]
) -> None:
    for label, config in sample:
        result = manager.apply(render(config, "default"))
        assert result.ok, f"{label}: {result.reason}: {result.error}"
        print(f"haproxy {result.mode:9} {result.duration * 1000:6.0f} ms  {label}")


@pytest.mark.parametrize("index", range(SAMPLE_SIZE))
def test_envoy_acks_each_accepted_hostile_config(
    envoy: EnvoyTarget, sample: list[tuple[str, Config]], index: int
) -> None:
    # One Envoy per config: a changed EDS cluster waits for Envoy's initial fetch timeout.
    label, config = sample[index]
    envoy.wait_running(envoy.publish(config, "default"), warm=False)
    print(f"envoy ACK  {label}")
