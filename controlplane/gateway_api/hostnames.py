"""Gateway API hostnames: which names a route serves on a listener (their intersection)."""

from __future__ import annotations


def _within(name: str, wildcard: str) -> bool:
    """Whether `name` (exact or a wildcard) lies inside `wildcard` (`*.suffix`): one or more
    labels before `.suffix`."""
    suffix = wildcard[1:]
    return name.endswith(suffix) and len(name) > len(suffix)


def intersect(listener: str | None, route: str) -> str | None:
    """The names both a listener's `hostname` (None: any) and one of a route's `hostnames`
    take, as one name or wildcard; None when they share none."""
    if listener is None or listener == route:
        return route
    if listener.startswith("*.") and _within(route, listener):
        return route
    if route.startswith("*.") and _within(listener, route):
        return listener
    return None


def served(listener: str | None, route_hostnames: list[str]) -> list[str]:
    """The domains a route serves on a listener: its hostnames narrowed to the listener's,
    the listener's own name when the route names none, `*` when neither does."""
    if not route_hostnames:
        return [listener or "*"]
    found = [intersect(listener, name) for name in route_hostnames]
    return list(dict.fromkeys(name for name in found if name is not None))
