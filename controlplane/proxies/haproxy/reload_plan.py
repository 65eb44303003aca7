"""Which differences between two bundles a running HAProxy can take without a reload.

The bundles say it themselves (see `controlplane.haproxy.bundle`). A change is
*runtime-updatable* when all of these hold:

- the skeletons are equal: the configurations are the same once every value of the runtime
  table (server addresses and weights) is masked;
- the files are equal, and the bundles name the same map files (their entries may differ);
- the runtime tables hold the same servers, by backend and name, in the same order;
- every server whose address changed has an IP address before and after, since the runtime
  API takes no host names (weights are 0 to 256 in every bundle).

Such a change is applied with `set server B/S addr A port P`, `set server B/S weight W` and an
atomic replacement of each changed map (`prepare map` / `add map @V` / `commit map @V`).
Everything else (a server added or removed, a header rule, a timeout, a map file added or
removed) needs a reload.
"""

from dataclasses import dataclass

from controlplane.haproxy.bundle import Bundle, MapEntries, ServerTable

_SHOWN = 5


@dataclass(frozen=True)
class ServerUpdate:
    """New address and/or weight for one server; a field is None when it did not change."""

    backend: str
    server: str
    address: str | None = None
    port: int | None = None
    weight: int | None = None


@dataclass(frozen=True)
class MapUpdate:
    """New entries for one map file."""

    name: str
    entries: MapEntries


@dataclass(frozen=True)
class ChangePlan:
    """How to move a running HAProxy from one bundle to another, and why."""

    reload: bool
    reason: str
    servers: tuple[ServerUpdate, ...] = ()
    maps: tuple[MapUpdate, ...] = ()


def _first_difference(old: str, new: str) -> str:
    old_lines, new_lines = old.split("\n"), new.split("\n")
    for number, (a, b) in enumerate(zip(old_lines, new_lines, strict=False), start=1):
        if a != b:
            return f"line {number}: {a.strip()[:80]!r} -> {b.strip()[:80]!r}"
    return f"line count {len(old_lines)} -> {len(new_lines)}"


def _layout(table: ServerTable) -> list[tuple[str, list[str]]]:
    return [(backend, [s.name for s in servers]) for backend, servers in table.items()]


def plan_change(old: Bundle, new: Bundle) -> ChangePlan:
    """Decide between runtime updates and a reload for going from `old` to `new`."""
    if old.skeleton != new.skeleton:
        return ChangePlan(True, f"configuration changed ({_first_difference(old.cfg, new.cfg)})")
    if old.files != new.files:
        return ChangePlan(True, "certificate or crt-list files changed")
    if set(old.map_entries) != set(new.map_entries):
        added = sorted(set(new.map_entries) - set(old.map_entries))
        removed = sorted(set(old.map_entries) - set(new.map_entries))
        return ChangePlan(True, f"map files changed (added {added}, removed {removed})")
    if _layout(old.servers) != _layout(new.servers):
        return ChangePlan(True, "servers added, removed or renamed")

    updates: list[ServerUpdate] = []
    for backend, servers in new.servers.items():
        for before, server in zip(old.servers[backend], servers, strict=True):
            label = f"{backend}/{server.name}"
            address: str | None = None
            port: int | None = None
            weight: int | None = None
            if (server.host, server.port) != (before.host, before.port):
                if not (server.has_ip and before.has_ip):
                    return ChangePlan(
                        True,
                        f"server {label} address {before.address} -> {server.address} "
                        "is not an IP:port change",
                    )
                address, port = server.host, server.port
            if server.weight != before.weight:
                weight = server.weight
            if address is not None or weight is not None:
                updates.append(ServerUpdate(backend, server.name, address, port, weight))

    maps = tuple(
        MapUpdate(name, entries)
        for name, entries in sorted(new.map_entries.items())
        if old.map_entries[name] != entries
    )
    if not updates and not maps:
        return ChangePlan(False, "no change")
    parts = []
    if updates:
        shown = ", ".join(_describe(u) for u in updates[:_SHOWN])
        more = f" and {len(updates) - _SHOWN} more" if len(updates) > _SHOWN else ""
        parts.append(f"{len(updates)} server(s): {shown}{more}")
    if maps:
        parts.append("map contents: " + ", ".join(m.name for m in maps))
    return ChangePlan(False, "runtime update of " + "; ".join(parts), tuple(updates), maps)


def _describe(update: ServerUpdate) -> str:
    changes = []
    if update.address is not None:
        changes.append(f"addr {update.address}:{update.port}")
    if update.weight is not None:
        changes.append(f"weight {update.weight}")
    return f"{update.backend}/{update.server} " + " ".join(changes)
