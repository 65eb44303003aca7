"""The HAProxy renderer's trickiest decisions, on a real HAProxy fed by the real manager:
element-prefix fallback when conditions fail, precedence, hosts, weighted split, actions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from controlplane.model import Config, parse_config
from tests.harness.backends import BackendFleet, BackendSpec
from tests.harness.clients import http
from tests.harness.ports import free_port
from tests.harness.targets_haproxy import HAProxyTarget

pytestmark = pytest.mark.haproxy

LOOPBACK = "127.0.0.1"
NAMES = ("a", "b", "c", "d", "e", "f", "g")


def routing_config(port: int, addresses: dict[str, str]) -> Config:
    routes: list[dict[str, Any]] = [
        {"name": "root", "backends": [{"cluster": "a"}]},
        {
            "name": "api-beta",
            "match": {"path": {"prefix": "/api"}, "headers": [{"name": "X-Beta", "exact": "yes"}]},
            "backends": [{"cluster": "b"}],
        },
        {
            "name": "api-post",
            "match": {"path": {"prefix": "/api/"}, "method": "POST"},
            "backends": [{"cluster": "c"}],
        },
        {
            "name": "v2-flag",
            "match": {
                "path": {"prefix": "/api/v2"},
                "headers": [{"name": "x-v2", "present": True}],
            },
            "backends": [{"cluster": "d"}],
        },
        {
            "name": "exact-cookie",
            "match": {"path": {"exact": "/api/exact"}, "cookies": [{"name": "c", "exact": "1"}]},
            "backends": [{"cluster": "e"}],
        },
        {
            "name": "numbers",
            "match": {"path": {"regex": "/api/[0-9]+"}},
            "backends": [{"cluster": "f"}],
        },
        {
            "name": "query",
            "match": {"path": {"prefix": "/q"}, "query": [{"name": "v", "regex": "[0-9]"}]},
            "backends": [{"cluster": "g"}],
        },
        {
            "name": "split",
            "match": {"path": {"exact": "/split"}},
            "backends": [{"cluster": "a", "weight": 3}, {"cluster": "b", "weight": 1}],
        },
        {
            "name": "rewrite",
            "match": {"path": {"prefix": "/old"}},
            "prefix_rewrite": "/new",
            "backends": [{"cluster": "a"}],
            "request_headers": {"set": {"x-set": "one two"}, "remove": ["x-drop"]},
            "response_headers": {"add": {"x-added": "yes"}},
        },
        {
            "name": "moved",
            "match": {"path": {"prefix": "/moved"}},
            "redirect": {"scheme": "https", "path": "/there", "status": 301},
            "response_headers": {"set": {"x-why": "moved"}},
        },
        {
            "name": "teapot",
            "match": {"path": {"exact": "/teapot"}},
            "direct_response": {"status": 418, "body": "short\nand stout"},
        },
    ]
    return parse_config(
        {
            "listeners": [
                {
                    "name": "web",
                    "address": f"{LOOPBACK}:{port}",
                    "protocol": "http",
                    "virtual_hosts": [
                        {"name": "main", "domains": ["example.com", "*"], "routes": routes},
                        {
                            "name": "wild",
                            "domains": ["*.example.com"],
                            "routes": [{"backends": [{"cluster": "f"}]}],
                        },
                        {
                            "name": "exact",
                            "domains": ["x.example.com"],
                            "routes": [{"backends": [{"cluster": "g"}]}],
                        },
                    ],
                }
            ],
            "clusters": [
                {"name": name, "endpoints": [{"address": address}]}
                for name, address in addresses.items()
            ],
        }
    )


@pytest.fixture(scope="module")
def proxy() -> Iterator[int]:
    port = free_port()
    with BackendFleet() as fleet:
        addresses = {name: fleet.start(BackendSpec(name)).address for name in NAMES}
        target = HAProxyTarget()
        target.start()
        try:
            target.apply(routing_config(port, addresses), "default")
            yield port
        finally:
            target.stop()


def ask(port: int, path: str, **kwargs: Any) -> str | None:
    return http(LOOPBACK, port, path, **kwargs).backend


@pytest.mark.parametrize(
    ("path", "kwargs", "backend"),
    [
        ("/api/x", {}, "a"),
        ("/api/x", {"headers": [("x-beta", "yes")]}, "b"),
        ("/api", {"headers": [("X-BETA", "yes")]}, "b"),
        ("/apix", {"headers": [("x-beta", "yes")]}, "a"),
        ("/api/x", {"method": "POST", "headers": [("x-beta", "yes")]}, "c"),
        ("/api/v2/z", {"headers": [("x-v2", "")]}, "d"),
        ("/api/v2/z", {"headers": [("x-beta", "yes")]}, "b"),
        ("/api/v2/z", {"method": "POST"}, "c"),
        ("/api/exact", {"headers": [("cookie", "z=0; c=1")]}, "e"),
        ("/api/exact", {"headers": [("x-beta", "yes")]}, "b"),
        ("/api/123", {"headers": [("x-beta", "yes")]}, "f"),
        ("/api/123x", {}, "a"),
        ("/q/r", {}, "a"),
        ("/q/r?w=1&v=7", {}, "g"),
        ("/q/r?v=77", {}, "a"),
    ],
)
def test_route_precedence_and_fallback(
    proxy: int, path: str, kwargs: dict[str, Any], backend: str
) -> None:
    assert ask(proxy, path, **kwargs) == backend


@pytest.mark.parametrize(
    ("host", "backend"),
    [
        ("example.com", "a"),
        ("EXAMPLE.com:8080", "a"),
        ("x.example.com", "g"),
        ("y.x.example.com", "f"),
        ("other.test", "a"),
    ],
)
def test_hosts(proxy: int, host: str, backend: str) -> None:
    assert ask(proxy, "/", host_header=host) == backend


def test_weighted_split(proxy: int) -> None:
    seen = Counter(ask(proxy, "/split") for _ in range(400))
    assert set(seen) == {"a", "b"}
    assert 55 <= seen["b"] <= 145, seen  # expected 100, sd 8.7


def test_rewrite_and_header_mutations(proxy: int) -> None:
    answer = http(LOOPBACK, proxy, "/old/x?y=1", headers=[("x-drop", "1")])
    report = answer.json()
    assert report["path"] == "/new/x?y=1"
    assert report["headers"]["x-set"] == "one two"
    assert "x-drop" not in report["headers"]
    assert answer.headers.get("x-added") == "yes"
    assert http(LOOPBACK, proxy, "/old").json()["path"] == "/new"


def test_redirect_direct_response_and_refusals(proxy: int) -> None:
    moved = http(LOOPBACK, proxy, "/moved/a?b=1", host_header="example.com:8080")
    assert moved.status == 301
    # The Host port is dropped before routing, as Envoy's strip_any_host_port does.
    assert moved.headers.get("location") == "https://example.com/there?b=1"
    assert moved.headers.get("x-why") == "moved"
    teapot = http(LOOPBACK, proxy, "/teapot")
    assert (teapot.status, teapot.text) == (418, "short\nand stout")
    upgrade = http(
        LOOPBACK,
        proxy,
        "/",
        headers=[
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
        ],
    )
    assert upgrade.status == 403
    assert http(LOOPBACK, proxy, "/nothing", host_header="x.example.com").backend == "g"
