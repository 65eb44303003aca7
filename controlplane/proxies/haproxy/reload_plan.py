"""Which differences between two bundles a running HAProxy can take without a reload.

The bundles say it themselves (see `controlplane.haproxy.bundle`). A change is
*runtime-updatable* when all of these hold:

- the skeletons are equal: the configurations are the same once every value of the runtime
  table (server addresses and weights) is masked;
- the files are equal, and the bundles name the same map files (their entries may differ);
- the runtime tables hold the same servers, by backend and name, in the same order, at the
  same addresses (weights are 0 to 256 in every bundle).

Such a change is applied with `set server B/S weight W` and an atomic replacement of each
changed map (`prepare map` / `add map @V` / `commit map @V`). Everything else (a server added,
removed or moved to another address, a header rule, a timeout, a map file added or removed)
needs a reload.

A server's address is not changed at runtime: after `set server B/S addr`, HAProxy 2.6 keeps
handing requests to the idle connections it holds to the old address (`http-reuse always`
takes any of them; `set server ... state maint` and `ready` do not close them), so under steady
load the old address keeps most of the traffic. A reload gives the new worker empty pools; its
plan says `retire` (also when servers are removed): the previous workers, which answer at most
one last request on each client connection they hold (`option idle-close-on-response`), are
waited for (see the manager).
"""

from dataclasses import dataclass

from controlplane.haproxy.bundle import Bundle, MapEntries, ServerTable

_SHOWN = 5


@dataclass(frozen=True)
class ServerUpdate:
    """New weight for one server."""

    backend: str
    server: str
    weight: int


@dataclass(frozen=True)
class MapUpdate:
    """New entries for one map file."""

    name: str
    entries: MapEntries


@dataclass(frozen=True)
class ChangePlan:
    """How to move a running HAProxy from one bundle to another, and why.

    `retire`: the reload moves or removes servers, so it is done only once the previous workers,
    which still reach the old addresses, have exited."""

    reload: bool
    reason: str
    servers: tuple[ServerUpdate, ...] = ()
    maps: tuple[MapUpdate, ...] = ()
    retire: bool = False


def _first_difference(old: str, new: str) -> str:
    old_lines, new_lines = old.split("\n"), new.split("\n")
    for number, (a, b) in enumerate(zip(old_lines, new_lines, strict=False), start=1):
        if a != b:
            return f"line {number}: {a.strip()[:80]!r} -> {b.strip()[:80]!r}"
    return f"line count {len(old_lines)} -> {len(new_lines)}"


def _layout(table: ServerTable) -> list[tuple[str, list[str]]]:
    return [(backend, [s.name for s in servers]) for backend, servers in table.items()]


def _left(old: ServerTable, new: ServerTable) -> list[str]:
    """The servers of `old` that `new` moves to another address or removes."""
    kept = {(backend, s.name): s.address for backend, servers in new.items() for s in servers}
    return [
        f"{backend}/{s.name} {s.address} -> {kept.get((backend, s.name), 'removed')}"
        for backend, servers in old.items()
        for s in servers
        if kept.get((backend, s.name)) != s.address
    ]


def plan_change(old: Bundle, new: Bundle) -> ChangePlan:
    """Decide between runtime updates and a reload for going from `old` to `new`."""
    left = _left(old.servers, new.servers)
    retire = bool(left)
    if old.skeleton != new.skeleton:
        reason = f"configuration changed ({_first_difference(old.cfg, new.cfg)})"
        return ChangePlan(True, reason, retire=retire)
    if old.files != new.files:
        return ChangePlan(True, "certificate or crt-list files changed", retire=retire)
    if set(old.map_entries) != set(new.map_entries):
        added = sorted(set(new.map_entries) - set(old.map_entries))
        removed = sorted(set(old.map_entries) - set(new.map_entries))
        reason = f"map files changed (added {added}, removed {removed})"
        return ChangePlan(True, reason, retire=retire)
    if _layout(old.servers) != _layout(new.servers):
        return ChangePlan(True, "servers added, removed or renamed", retire=retire)
    if left:
        more = f" and {len(left) - _SHOWN} more" if len(left) > _SHOWN else ""
        return ChangePlan(
            True,
            f"{len(left)} server(s) moved ({', '.join(left[:_SHOWN])}{more}): a reload, so that"
            " no idle connection to an old address is reused",
            retire=True,
        )
    updates = [
        ServerUpdate(backend, server.name, server.weight)
        for backend, servers in new.servers.items()
        for before, server in zip(old.servers[backend], servers, strict=True)
        if server.weight != before.weight
    ]
    maps = tuple(
        MapUpdate(name, entries)
        for name, entries in sorted(new.map_entries.items())
        if old.map_entries[name] != entries
    )
    if not updates and not maps:
        return ChangePlan(False, "no change")
    parts = []
    if updates:
        shown = ", ".join(f"{u.backend}/{u.server} weight {u.weight}" for u in updates[:_SHOWN])
        more = f" and {len(updates) - _SHOWN} more" if len(updates) > _SHOWN else ""
        parts.append(f"{len(updates)} server(s): {shown}{more}")
    if maps:
        parts.append("map contents: " + ", ".join(m.name for m in maps))
    return ChangePlan(False, "runtime update of " + "; ".join(parts), tuple(updates), maps)
