"""What the renderer knows of a listener or a backend while it renders it, as the route tables
and the features (`controlplane.haproxy.features`) see it."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..model import Cluster, Config, GroupFacts, Listener, Route, RouteId, VirtualHost, route_ids


@dataclass(frozen=True)
class RouteEntry:
    """A model route with the names the rendered configuration gives it: `id` keys its map
    entries (`site/api`, or `site/_3` for the fourth, unnamed, route of `site`), `where` is
    its place in the config (`listeners[0].virtual_hosts[0].routes[3]`)."""

    id: str
    where: str
    vhost: VirtualHost
    route: Route

    @property
    def name(self) -> str:
        """The route's name, or its id when it has none (for comments)."""
        return self.route.name or self.id

    @property
    def forwards(self) -> bool:
        """Whether the route forwards to backends (else it answers itself)."""
        return self.route.backends is not None


@dataclass
class MapFiles:
    """The map files of one listener, `<listener>.<purpose>.map`, filled entry by entry."""

    listener: str
    entries: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))

    def name(self, purpose: str) -> str:
        """The file name of the map for `purpose`."""
        return f"{self.listener}.{purpose}.map"

    def add(self, purpose: str, key: str, value: str) -> str:
        """Append an entry to the map for `purpose`; its file name."""
        name = self.name(purpose)
        self.entries[name].append((key, value))
        return name

    def __contains__(self, purpose: str) -> bool:
        return self.name(purpose) in self.entries


@dataclass
class BundleFiles:
    """Files features contribute to the bundle (pattern files, Lua sources, SPOE
    configurations), each named `<stem>.<content hash>.<suffix>`, so a changed file changes
    the configuration text that names it and HAProxy reloads."""

    files: dict[str, str] = field(default_factory=dict)

    def add(self, stem: str, suffix: str, content: str) -> str:
        """Add a file holding `content`; its name (the same content gets the same name)."""
        digest = hashlib.sha256(content.encode()).hexdigest()[:12]
        name = f"{stem}.{digest}.{suffix}"
        self.files[name] = content
        return name


@dataclass(frozen=True)
class GlobalScope:
    """The node group's part of the config being rendered, for the `global` section, and the
    bundle's files."""

    config: Config
    files: BundleFiles


@dataclass(frozen=True)
class ListenerScope:
    """One listener being rendered: its routes (declaration order; none for tcp and tls
    listeners), its map files, what the render knows of the node group, and the bundle's
    files."""

    listener: Listener
    index: int
    routes: Sequence[RouteEntry]
    maps: MapFiles
    facts: GroupFacts = field(default_factory=GroupFacts)
    files: BundleFiles = field(default_factory=BundleFiles)

    @property
    def forwarding(self) -> list[RouteEntry]:
        """The routes that forward to backends."""
        return [entry for entry in self.routes if entry.forwards]


@dataclass(frozen=True)
class BackendScope:
    """One backend being rendered: the cluster behind it and the backend's name (`api`, or
    `api:t30s` for routes with other backend-level options; `primary` for the former)."""

    cluster: Cluster
    name: str
    primary: bool


def route_key(rid: RouteId) -> str:
    """A route's id in the rendered configuration, the key of its map entries: `site/api`, or
    `site/_3` for the fourth, unnamed, route of `site`."""
    return f"{rid.vhost}/{rid.name or f'_{rid.index}'}"


def route_entries(listener: Listener, index: int) -> list[RouteEntry]:
    """Every route of `listener` (`listeners[index]`), in declaration order."""
    entries = []
    for vi, vhost in enumerate(listener.virtual_hosts):
        for rid, route in zip(route_ids(vhost), vhost.routes, strict=True):
            name = route_key(rid)
            where = f"listeners[{index}].virtual_hosts[{vi}].routes[{rid.index}]"
            entries.append(RouteEntry(name, where, vhost, route))
    return entries
