"""A large virtual host compiled into a matcher tree takes every request to the same route
as the plain route list: two real Envoys, one per form, answer generated requests."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from controlplane.envoy import matcher_tree
from controlplane.model import Config, parse_config
from tests.harness.clients import HttpSession
from tests.harness.ports import free_port
from tests.harness.targets_envoy import EnvoyTarget

pytestmark = pytest.mark.envoy

SEGMENTS = ("a", "b", "ab", "v1")
SEED = 20_240_601


def _path(rng: random.Random, depth: int) -> str:
    return "/" + "/".join(rng.choice(SEGMENTS) for _ in range(depth))


def _conditions(rng: random.Random) -> dict[str, Any]:
    match: dict[str, Any] = {}
    roll = rng.random()
    if roll < 0.15:
        match["method"] = "POST"
    elif roll < 0.3:
        match["headers"] = [{"name": "x-h", "exact": "1"}]
    elif roll < 0.4:
        match["query"] = [{"name": "q", "present": True}]
    elif roll < 0.5:
        match["cookies"] = [{"name": "c", "exact": "1"}]
    return match


def large_host_config(port: int, count: int = 160) -> Config:
    """Prefix routes (some written with a trailing `/`), exact routes (some equal to a prefix,
    some ending in `/`), conditions of every kind, duplicates, and `/` routes."""
    rng = random.Random(SEED)
    routes: list[dict[str, Any]] = []
    for _ in range(count):
        depth = rng.randint(1, 3)
        path = _path(rng, depth)
        if rng.random() < 0.3:
            path_match = {"exact": path + ("/" if rng.random() < 0.3 else "")}
        else:
            path_match = {"prefix": path + ("/" if rng.random() < 0.2 else "")}
        routes.append({"match": {"path": path_match, **_conditions(rng)}})
    routes.append({"match": {"path": {"prefix": "/"}, "headers": [{"name": "x-h", "exact": "1"}]}})
    routes.append({"match": {"path": {"prefix": "/"}, "method": "POST"}})
    for i, route in enumerate(routes):
        route["name"] = f"r{i}"
        route["direct_response"] = {"status": 200, "body": f"r{i}"}
    return parse_config(
        {
            "listeners": [
                {
                    "name": "web",
                    "address": f"127.0.0.1:{port}",
                    "protocol": "http",
                    "virtual_hosts": [{"name": "big", "domains": ["*"], "routes": routes}],
                }
            ]
        }
    )


def requests(count: int) -> Iterator[tuple[str, str, list[tuple[str, str]]]]:
    rng = random.Random(SEED + 1)
    tails = ("", "/", "x", "/zz", "?q=1", "?r", "/?q", "/a")
    for _ in range(count):
        path = (_path(rng, rng.randint(1, 4)) if rng.random() < 0.95 else "") + rng.choice(tails)
        path = path if path.startswith("/") else "/" + path
        headers = []
        if rng.random() < 0.3:
            headers.append(("x-h", "1"))
        if rng.random() < 0.3:
            headers.append(("cookie", "c=1"))
        yield path, rng.choice(("GET", "GET", "POST")), headers


@pytest.fixture(scope="module")
def envoys() -> Iterator[tuple[EnvoyTarget, int, EnvoyTarget, int]]:
    tree_port, list_port = free_port(), free_port()
    tree, plain = EnvoyTarget("sotw"), EnvoyTarget("sotw")
    try:
        tree.start()
        plain.start()
        tree.apply(large_host_config(tree_port), "default")
        saved = matcher_tree.TREE_MIN_ROUTES
        matcher_tree.TREE_MIN_ROUTES = 1_000_000
        try:
            plain.apply(large_host_config(list_port), "default")
        finally:
            matcher_tree.TREE_MIN_ROUTES = saved
        yield tree, tree_port, plain, list_port
    finally:
        tree.stop()
        plain.stop()


def test_both_forms_are_what_they_claim(envoys: tuple[EnvoyTarget, int, EnvoyTarget, int]) -> None:
    tree, _, plain, _ = envoys
    assert tree.resources is not None and plain.resources is not None
    assert tree.resources.routes["web"].virtual_hosts[0].HasField("matcher")
    assert (
        len(plain.resources.routes["web"].virtual_hosts[0].routes) == 1 + 162
    )  # the Host-with-a-comma route, then the host's


def test_tree_and_list_choose_the_same_route(
    envoys: tuple[EnvoyTarget, int, EnvoyTarget, int],
) -> None:
    _, tree_port, _, list_port = envoys
    chosen: Counter[str] = Counter()
    mismatches = []
    with (
        HttpSession("127.0.0.1", tree_port) as by_tree,
        HttpSession("127.0.0.1", list_port) as by_list,
    ):
        for path, method, headers in requests(1500):
            got = by_tree.request(path, method, headers)
            want = by_list.request(path, method, headers)
            chosen[want.text if want.status == 200 else str(want.status)] += 1
            if (got.status, got.text) != (want.status, want.text):
                mismatches.append((method, path, headers, got.text, want.text))
    assert not mismatches[:20], f"{len(mismatches)} requests differ"
    assert len(chosen) > 60, chosen  # the requests reach many different routes
    assert chosen["404"] > 0


def test_both_forms_refuse_a_host_holding_a_comma_before_any_route(
    envoys: tuple[EnvoyTarget, int, EnvoyTarget, int],
) -> None:
    _, tree_port, _, list_port = envoys
    for port in (tree_port, list_port):
        with HttpSession("127.0.0.1", port, host_header="a.test,b.test") as session:
            assert session.request("/", "GET", []).status == 400
