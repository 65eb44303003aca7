"""The Envoy compiler after a change: what it made of the parts a change left as they were is
reused, and the result is byte for byte what a compile from scratch gives."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controlplane.envoy import translate
from controlplane.model import Config, ConfigError, GroupFacts, load_file, parse_config
from controlplane.model.parts import PARTS
from tests.harness.threads import race

ROOT = Path(__file__).resolve().parents[3]
INPUTS = sorted((ROOT / "examples").glob("*.yaml")) + sorted((ROOT / "tests/golden").glob("*.yaml"))

Change = Callable[[dict[str, Any]], None]


def clusters(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from data.get("clusters", [])


def vhosts(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for listener in data.get("listeners", []):
        yield from listener.get("virtual_hosts", [])


def move_first_endpoint(data: dict[str, Any]) -> None:
    for cluster in clusters(data):
        if cluster.get("endpoints"):
            cluster["endpoints"][0]["address"] = "127.0.0.1:9"
            return


def add_cookie_affinity(data: dict[str, Any]) -> None:
    for cluster in reversed(list(clusters(data))):
        if not cluster.get("hash_on"):
            cluster["hash_on"] = {"cookie": {"name": "sticky"}}
            return


def drop_affinity(data: dict[str, Any]) -> None:
    for cluster in clusters(data):
        if cluster.pop("hash_on", None):
            return


def drop_last_route(data: dict[str, Any]) -> None:
    for vhost in vhosts(data):
        if len(vhost.get("routes", [])) > 1:
            vhost["routes"].pop()
            return


def toggle_forwarded_for(data: dict[str, Any]) -> None:
    for listener in data.get("listeners", []):
        if listener.get("virtual_hosts"):
            listener["forwarded_for"] = not listener.get("forwarded_for", False)
            return


CHANGES: list[Change] = [
    move_first_endpoint,
    add_cookie_affinity,
    drop_affinity,
    drop_last_route,
    toggle_forwarded_for,
]


def wire(config: Config, group: str, facts: GroupFacts) -> dict[str, dict[str, bytes]]:
    return translate(config, group, facts).serialized()


def changed(before: Config, change: Change) -> tuple[Config, Config] | None:
    """The config `change` makes of `before`, once sharing its unchanged parts and once made
    afresh; None when the change is not a valid config or changes nothing."""
    data = copy.deepcopy(PARTS.plain(before))
    change(data)
    if data == PARTS.plain(before):
        return None
    try:
        return parse_config(data, like=before), parse_config(copy.deepcopy(data))
    except ConfigError:
        return None


@pytest.mark.parametrize("path", INPUTS, ids=lambda p: p.name)
def test_a_compile_after_a_change_is_the_compile_from_scratch(path: Path) -> None:
    before = load_file(path)
    for group in before.group_names():
        for facts in (GroupFacts(), GroupFacts(members=3)):
            try:
                wire(before, group, facts)
            except ConfigError:
                return  # not expressible on Envoy: nothing to compare
            for change in CHANGES:
                configs = changed(before, change)
                if configs is None:
                    continue
                sharing, fresh = configs
                assert wire(sharing, group, facts) == wire(fresh, group, facts), change.__name__


def test_a_change_of_endpoints_reuses_the_listener_and_its_routes() -> None:
    before = load_file(ROOT / "examples/quickstart.yaml")
    group = before.group_names()[0]
    first = translate(before, group)
    data = copy.deepcopy(PARTS.plain(before))
    move_first_endpoint(data)
    after = translate(parse_config(data, like=before), group)
    assert after.listeners.keys() == first.listeners.keys()
    for name in first.listeners:
        assert after.listeners[name] is first.listeners[name]
    for name in first.routes:
        assert after.routes[name] is first.routes[name]
    assert after.endpoints != first.endpoints


def test_every_change_applies_to_the_quickstart() -> None:
    before = load_file(ROOT / "examples/quickstart.yaml")
    assert [c.__name__ for c in CHANGES if changed(before, c) is None] == []


def test_compiles_in_several_threads_share_what_they_remember_safely() -> None:
    """The fleet compiles in a worker thread while the API explains and last-known-good
    compiles in others."""
    base = load_file(ROOT / "examples/quickstart.yaml")
    group = base.group_names()[0]
    expected = wire(base, group, GroupFacts())

    def compiler(n: int) -> None:
        for _ in range(100):
            data = copy.deepcopy(PARTS.plain(base))
            move_first_endpoint(data)
            translate(parse_config(data, like=base), group)
            assert wire(base, group, GroupFacts()) == expected

    assert race(compiler) == []
