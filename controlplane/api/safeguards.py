"""Changes that are valid but refused unless the request asks for them explicitly.

Leaving a node group with connected proxies without any listener: a group loses its
listeners when the head gives it at least one and the new config gives it none, either
because the config declares no node groups and no listeners (the group `default`), or
because it no longer declares the group. Declared groups always name a listener, so a group
cannot be emptied otherwise. Proxies of an emptied group close every listener, or, when the
group is gone, keep running what they last received with nothing to update them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from fastapi import Query

from ..fleet.records import ProxyRecord
from ..model import Config
from .errors import ApiError

ConnectedProxies = Callable[[], Mapping[str, Sequence[str]]]
"""The ids of the connected proxies of each node group, asked at the time of a write."""

ALLOW_EMPTY_GROUPS = "allow_empty_groups"


def allow_empty_groups_query() -> Any:
    """The query parameter that lets a write empty node groups that have connected proxies."""
    return Query(
        False,
        alias=ALLOW_EMPTY_GROUPS,
        description="Apply even when the change leaves a node group that has connected "
        "proxies without any listener (refused with 422 otherwise).",
    )


def connected_by_group(records: Iterable[ProxyRecord]) -> dict[str, list[str]]:
    """The ids of the connected proxies of each group."""
    groups: dict[str, list[str]] = {}
    for record in records:
        if record.connected:
            groups.setdefault(record.group, []).append(record.id)
    return groups


def listener_count(config: Config | None, group: str) -> int:
    """How many listeners `config` gives proxies of `group` (0 when it does not know it)."""
    if config is None or group not in config.group_names():
        return 0
    return len(config.for_group(group).listeners)


def refuse_emptied_groups(
    old: Config | None, new: Config, connected: Mapping[str, Sequence[str]]
) -> None:
    """A 422 naming each group with connected proxies that `new` leaves without listeners."""
    issues = []
    for group, proxies in sorted(connected.items()):
        if not proxies or listener_count(new, group) or not listener_count(old, group):
            continue
        declared = group in new.group_names()  # then it is the implicit group `default`
        path = "listeners" if declared else "node_groups"
        why = "no listener" if declared else "no longer declared"
        issues.append(
            {
                "path": path,
                "message": f"node group {group!r} would be left without listeners ({why}); "
                f"its connected proxies: {', '.join(sorted(proxies))}",
            }
        )
    if issues:
        raise ApiError(
            422,
            "this change leaves node groups with connected proxies without any listener; "
            f"send ?{ALLOW_EMPTY_GROUPS}=true to apply it anyway",
            issues,
        )
