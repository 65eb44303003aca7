"""Which names a route serves on a listener, as the Gateway API's hostname intersection."""

from __future__ import annotations

import pytest

from controlplane.gateway_api.hostnames import intersect, served


@pytest.mark.parametrize(
    ("listener", "route", "shared"),
    [
        (None, "a.example.com", "a.example.com"),
        ("a.example.com", "a.example.com", "a.example.com"),
        ("*.example.com", "a.b.example.com", "a.b.example.com"),
        ("*.example.com", "example.com", None),
        ("very.specific.com", "*.specific.com", "very.specific.com"),
        ("*.example.com", "*.a.example.com", "*.a.example.com"),
        ("*.a.example.com", "*.example.com", "*.a.example.com"),
        ("a.example.com", "b.example.com", None),
    ],
)
def test_a_route_serves_the_names_it_shares_with_its_listener(
    listener: str | None, route: str, shared: str | None
) -> None:
    assert intersect(listener, route) == shared


def test_without_hostnames_a_route_serves_its_listeners_or_any() -> None:
    assert served("a.example.com", []) == ["a.example.com"]
    assert served(None, []) == ["*"]
    assert served("*.io", ["x.io", "y.org", "x.io"]) == ["x.io"]
