"""Which differences between two bundles a running HAProxy can take without a reload.

A change is *runtime-updatable* when all of these hold:

- the two configurations are byte-identical once, on every `server NAME ADDRESS ...` line of a
  `backend` or `listen` section, the address and the value after `weight` are blanked out
  (so: same sections, same backends, same servers in the same order, same options);
- every server whose address changed has an IP literal and a numeric port, before and after
  (`127.0.0.1:8080`, `[::1]:8080`), since the runtime API takes no host names;
- every changed weight is a number from 0 to 256;
- the bundles name the same map files (only their contents may differ).

Such a change is applied with `set server B/S addr A port P`, `set server B/S weight W` and an
atomic replacement of each changed map (`prepare map` / `add map @V` / `commit map @V`).
Everything else (a server added or removed, a header rule, a timeout, a map file added or
removed) needs a reload.
"""

import re
from dataclasses import dataclass

from controlplane.haproxy.bundle import Bundle
from controlplane.model import split_address

SECTION_KEYWORDS = frozenset(
    {
        "global",
        "defaults",
        "frontend",
        "backend",
        "listen",
        "peers",
        "resolvers",
        "userlist",
        "mailers",
        "program",
        "http-errors",
        "ring",
        "cache",
        "fcgi-app",
    }
)
_SERVER_LINE = re.compile(r"^(\s*server\s+)(\S+)(\s+)(\S+)(.*)$")
_WEIGHT = re.compile(r"(\sweight\s+)(\S+)")
_ADDR_BLANK = "<address>"
_WEIGHT_BLANK = "<weight>"
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
    """New content for one map file."""

    name: str
    content: str


@dataclass(frozen=True)
class ChangePlan:
    """How to move a running HAProxy from one bundle to another, and why."""

    reload: bool
    reason: str
    servers: tuple[ServerUpdate, ...] = ()
    maps: tuple[MapUpdate, ...] = ()


@dataclass(frozen=True)
class _Server:
    address: str
    weight: str | None


def _skeleton(cfg: str) -> tuple[list[str], dict[tuple[str, str], _Server]]:
    """The configuration with server addresses and weights blanked, and those values."""
    lines: list[str] = []
    servers: dict[tuple[str, str], _Server] = {}
    section, proxy = "", ""
    for line in cfg.split("\n"):
        words = line.split()
        if words and words[0] in SECTION_KEYWORDS:
            section, proxy = words[0], (words[1] if len(words) > 1 else "")
        match = _SERVER_LINE.match(line) if section in ("backend", "listen") else None
        if match is None:
            lines.append(line)
            continue
        lead, name, gap, address, rest = match.groups()
        weight = _WEIGHT.search(rest)
        servers[(proxy, name)] = _Server(address, weight.group(2) if weight else None)
        blanked_rest = _WEIGHT.sub(rf"\g<1>{_WEIGHT_BLANK}", rest, count=1)
        lines.append(f"{lead}{name}{gap}{_ADDR_BLANK}{blanked_rest}")
    return lines, servers


def parse_ip_port(address: str) -> tuple[str, int] | None:
    """`IP:PORT` or `[IPv6]:PORT` as (ip, port); None for anything else (names, ranges, unix@)."""
    try:
        parts = split_address(address)
    except ValueError:
        return None
    return (parts.host, parts.port) if parts.ip is not None else None


def _first_difference(old: list[str], new: list[str]) -> str:
    for number, (a, b) in enumerate(zip(old, new, strict=False), start=1):
        if a != b:
            return f"line {number}: {a.strip()[:80]!r} -> {b.strip()[:80]!r}"
    return f"line count {len(old)} -> {len(new)}"


def plan_change(old: Bundle, new: Bundle) -> ChangePlan:
    """Decide between runtime updates and a reload for going from `old` to `new`."""
    old_lines, old_servers = _skeleton(old.cfg)
    new_lines, new_servers = _skeleton(new.cfg)
    if old_lines != new_lines:
        return ChangePlan(
            True, f"configuration changed ({_first_difference(old_lines, new_lines)})"
        )
    if old.files != new.files:
        return ChangePlan(True, "certificate or crt-list files changed")
    if set(old.maps) != set(new.maps):
        added = sorted(set(new.maps) - set(old.maps))
        removed = sorted(set(old.maps) - set(new.maps))
        return ChangePlan(True, f"map files changed (added {added}, removed {removed})")

    updates: list[ServerUpdate] = []
    for key, server in new_servers.items():
        before = old_servers[key]
        label = f"{key[0]}/{key[1]}"
        address: str | None = None
        port: int | None = None
        weight: int | None = None
        if server.address != before.address:
            target = parse_ip_port(server.address)
            if target is None or parse_ip_port(before.address) is None:
                return ChangePlan(
                    True,
                    f"server {label} address {before.address} -> {server.address} "
                    "is not an IP:port change",
                )
            address, port = target
        if server.weight != before.weight:
            if server.weight is None or not server.weight.isdigit() or int(server.weight) > 256:
                return ChangePlan(True, f"server {label} weight {before.weight} -> {server.weight}")
            weight = int(server.weight)
        if address is not None or weight is not None:
            updates.append(ServerUpdate(key[0], key[1], address, port, weight))

    maps = tuple(
        MapUpdate(name, content)
        for name, content in sorted(new.maps.items())
        if old.maps[name] != content
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
