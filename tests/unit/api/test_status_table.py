"""`controlplane status`'s STATE column: what a proxy's health and revision say."""

from __future__ import annotations

from typing import Any

from controlplane.client import status_table

NOW = 1_000_000.0


def state(**proxy: Any) -> str:
    """The row of one proxy, from its STATE column on."""
    record = {"id": "p", "kind": "haproxy", "group": "g", "revision": 3, "last_seen": NOW}
    header, line = status_table({"revision": 3, "proxies": [{**record, **proxy}]}, now=NOW)[1:]
    return line[header.index("STATE") :]


def test_the_state_column_says_down_restarted_current_or_behind() -> None:
    def health(kind: str, ago: float) -> dict[str, Any]:
        return {"state": kind, "at": NOW - ago, "reason": "the master exited", "error": None}

    rows = {
        "current": state(connected=True, current=True),
        "behind": state(connected=True, current=False),
        "disconnected": state(connected=False, current=False),
        "down since 5s ago": state(connected=True, current=False, health=health("down", 5)),
        "restart failed 2s ago": state(
            connected=True, current=False, health=health("restart failed", 2)
        ),
        "current, restarted 9s ago": state(
            connected=True, current=True, health=health("restarted", 9)
        ),
    }
    for expected, shown in rows.items():
        assert shown.startswith(expected + "  "), (expected, shown)
