"""Envoy as a data plane: each group compiled into an xDS snapshot, served by the xDS server's
cache, and what the server's streams report recorded in the ledger."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..envoy import Resources, translate
from ..model import Config, GroupFacts, ProxyKind
from ..xds import types
from ..xds.cache import Snapshot, SnapshotCache
from .ledger import Ledger


def snapshot_of(resources: Resources) -> Snapshot:
    """The xDS snapshot of a group's resources: every type, even an empty one."""
    return Snapshot(
        {
            types.CLUSTER: resources.clusters,
            types.ENDPOINT: resources.endpoints,
            types.LISTENER: resources.listeners,
            types.ROUTE: resources.routes,
        }
    )


@dataclass(frozen=True)
class EnvoyBuild:
    """A group's resources and their snapshot; its parts are the versions of its types."""

    resources: Resources
    snapshot: Snapshot

    @property
    def versions(self) -> Mapping[str, Mapping[str, str]]:
        snapshot = self.snapshot
        return {snapshot.version: {t: snapshot.type_version(t) for t in snapshot}}


class EnvoyPlane:
    """The Envoys of every group, fed through `cache` (which the xDS server serves)."""

    kind: ProxyKind = "envoy"

    def __init__(self, cache: SnapshotCache) -> None:
        self.cache = cache

    def groups(self, config: Config) -> list[str]:
        return config.group_names()  # any Envoy may connect as a node of any group

    def compile(self, config: Config, group: str, facts: GroupFacts = GroupFacts()) -> EnvoyBuild:
        resources = translate(config, group, facts)
        return EnvoyBuild(resources, snapshot_of(resources))

    def publish(
        self, revision: int, builds: Mapping[str, EnvoyBuild], keep: frozenset[str]
    ) -> None:
        for group, build in builds.items():
            self.cache.set_snapshot(group, build.snapshot)

    async def deliver(self, revision: int, builds: Mapping[str, EnvoyBuild]) -> None:
        return None  # Envoys fetch over xDS what `publish` put in the cache

    def explain(self, old: EnvoyBuild | None, new: EnvoyBuild | None) -> dict[str, Any]:
        """The resources added, changed and removed, by resource type."""
        before = old.snapshot if old is not None else None
        after = new.snapshot if new is not None else None
        changes: dict[str, dict[str, list[str]]] = {}
        for type_url in types.PUSH_ORDER:
            was = _versions(before, type_url)
            now = _versions(after, type_url)
            kinds = {
                "added": sorted(set(now) - set(was)),
                "changed": sorted(n for n in set(now) & set(was) if now[n] != was[n]),
                "removed": sorted(set(was) - set(now)),
            }
            kinds = {kind: names for kind, names in kinds.items() if names}
            if kinds:
                changes[type_url.rsplit(".", 1)[-1]] = kinds
        return changes


def _versions(snapshot: Snapshot | None, type_url: str) -> dict[str, str]:
    if snapshot is None:
        return {}
    return {name: entry.version for name, entry in snapshot.entries(type_url).items()}


class XdsReports:
    """The xDS server's `StreamCallbacks`, recorded in the ledger as Envoys."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def connected(self, node_id: str, group: str) -> None:
        self.ledger.connect(node_id, group, "envoy")

    def disconnected(self, node_id: str) -> None:
        self.ledger.disconnect(node_id)

    def described(self, node_id: str, admin: str) -> None:
        self.ledger.describe(node_id, {"admin": admin})

    def requested(self, node_id: str) -> None:
        self.ledger.seen(node_id)

    def subscribed(self, node_id: str, type_url: str) -> None:
        self.ledger.subscribed(node_id, type_url)

    def sent(self, node_id: str, type_url: str, version: str, snapshot: str) -> None:
        self.ledger.sent(node_id, type_url, version, snapshot)

    def acked(self, node_id: str, type_url: str, version: str) -> None:
        self.ledger.acked(node_id, type_url, version)

    def nacked(self, node_id: str, type_url: str, version: str, error: str) -> None:
        self.ledger.nacked(node_id, type_url, version, error)

    def synced(self, node_id: str, type_url: str, snapshot: str) -> None:
        self.ledger.synced(node_id, type_url, snapshot)
