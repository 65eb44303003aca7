"""Property: a config's parts remembered (`model.parts`) change nothing of what is made or
checked: the plain data and JSON text are Pydantic's, and a change checked knowing the config
it changes gives the config, or the issues, a check from scratch gives."""

from __future__ import annotations

import copy
import gc
import weakref
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.model import Config, ConfigError, load_file, parse_config
from controlplane.model.parts import KEPT_CONFIGS, PARTS
from tests.harness.threads import race

from .test_roundtrip import configs

GOLDEN = sorted((Path(__file__).parents[2] / "golden").glob("*.yaml"))


def outcome(data: Any, like: Config | None) -> Config | list[tuple[tuple[Any, ...], str]]:
    try:
        return parse_config(data, like)
    except ConfigError as exc:
        return [(issue.path, issue.message) for issue in exc.issues]


def lists_in(data: Any) -> list[list[Any]]:
    """Every list of objects in plain data, outermost first."""
    found: list[list[Any]] = []
    if isinstance(data, dict):
        for value in data.values():
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                found.append(value)
            found += lists_in(value)
    elif isinstance(data, list):
        for value in data:
            found += lists_in(value)
    return found


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_plain_data_and_text_are_pydantics(path: Path) -> None:
    config = load_file(path)
    assert PARTS.plain(config) == config.model_dump(mode="json")
    assert PARTS.json(config) == config.model_dump_json()


@settings(max_examples=60, deadline=None)
@given(configs(), st.data())
def test_a_change_checked_knowing_the_old_config_is_checked_as_from_scratch(
    data: dict[str, Any], draw: st.DataObject
) -> None:
    old = parse_config(data)
    changed = copy.deepcopy(PARTS.plain(old))
    lists = lists_in(changed)
    if lists:
        items = draw.draw(st.sampled_from(lists))
        i = draw.draw(st.integers(0, len(items) - 1))
        action = draw.draw(st.sampled_from(["remove", "duplicate", "move first", "rename"]))
        if action == "remove":
            del items[i]
        elif action == "duplicate":
            items.insert(i, copy.deepcopy(items[i]))
        elif action == "move first":
            items.insert(0, items.pop(i))
        elif "name" in items[i]:
            items[i]["name"] = "renamed"
    new = outcome(changed, old)
    assert new == outcome(changed, None)
    if isinstance(new, Config):
        assert PARTS.plain(new) == new.model_dump(mode="json")
        assert PARTS.json(new) == new.model_dump_json()


def change_once(data: dict[str, Any], draw: st.DataObject) -> None:
    """One change of a list of objects somewhere in `data`, as a write makes it."""
    lists = lists_in(data)
    if not lists:
        return
    items = draw.draw(st.sampled_from(lists))
    i = draw.draw(st.integers(0, len(items) - 1))
    action = draw.draw(st.sampled_from(["remove", "duplicate", "move last", "rename"]))
    if action == "remove":
        del items[i]
    elif action == "duplicate":
        items.insert(i, copy.deepcopy(items[i]))
    elif action == "move last":
        items.append(items.pop(i))
    elif "name" in items[i]:
        items[i] = {**items[i], "name": f"renamed{i}"}


@settings(max_examples=40, deadline=None)
@given(configs(), st.data())
def test_a_chain_of_changes_each_checked_knowing_the_one_before_is_checked_as_from_scratch(
    data: dict[str, Any], draw: st.DataObject
) -> None:
    """What the whole-config rules read of a changed part is made from what they read of the
    part it changes (`Parts.follows`): after several changes in a row, the same issues and
    the same plain data and text as from scratch."""
    head = parse_config(data)
    for _ in range(4):
        changed = copy.deepcopy(PARTS.plain(head))
        change_once(changed, draw)
        new = outcome(changed, head)
        assert new == outcome(changed, None)
        if isinstance(new, Config):
            assert PARTS.plain(new) == new.model_dump(mode="json")
            assert PARTS.json(new) == new.model_dump_json()
            head = new


def test_what_was_made_of_a_config_no_longer_recent_is_let_go() -> None:
    """The text of a large config is megabytes: what was made of a config that is neither the
    last nor the one before (its whole text, its virtual hosts' lists) is dropped at once,
    not kept until the parts made since outnumber those of the recent configs."""
    answer = {"direct_response": {"status": 204}}
    routes = [
        {"name": f"r{i}", "match": {"path": {"prefix": f"/r{i}"}}, **answer} for i in range(3)
    ]
    data = {
        "listeners": [
            {
                "name": "web",
                "address": "127.0.0.1:8080",
                "protocol": "http",
                "virtual_hosts": [{"name": "site", "domains": ["*"], "routes": routes}],
            }
        ]
    }
    head = parse_config(data)
    PARTS.json(head)
    first = weakref.ref(head.listeners[0].virtual_hosts[0])
    for n in range(KEPT_CONFIGS + 1):
        changed = objects_changed(PARTS.plain(head), n)
        head = parse_config(changed, head)
        assert PARTS.json(head) == head.model_dump_json()
    gc.collect()
    assert first() is None


def objects_changed(data: dict[str, Any], n: int) -> dict[str, Any]:
    """`data` with one more route, the lists on the way copied (as a write makes it)."""
    [listener] = data["listeners"]
    [vhost] = listener["virtual_hosts"]
    route = {
        "name": f"new{n}",
        "match": {"path": {"prefix": f"/new{n}"}},
        "direct_response": {"status": 204},
    }
    vhost = {**vhost, "routes": [*vhost["routes"], route]}
    return {**data, "listeners": [{**listener, "virtual_hosts": [vhost]}]}


def test_writers_in_several_threads_share_the_parts_safely() -> None:
    """Replicas' stores and the API check and write configs from several threads at once."""
    base = PARTS.plain(load_file(Path(__file__).parents[3] / "examples/quickstart.yaml"))

    def writer(n: int) -> None:
        head = parse_config(copy.deepcopy(base))
        for i in range(60):
            data = copy.deepcopy(PARTS.plain(head))
            data["clusters"][0]["endpoints"][0]["address"] = f"127.0.0.{n + 1}:{1000 + i}"
            head = parse_config(data, like=head)
            PARTS.json(head)

    assert race(writer) == []
