"""The whole configuration: listeners, clusters and the node groups that receive them."""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import Field

from .cluster import Cluster
from .kinds import DEFAULT_GROUP
from .listener import Listener
from .types import Model, Name


class NodeGroup(Model):
    """A set of proxies that run the same listeners, e.g. the L4 tier or the L7 tier.

    A proxy names its group when it connects (Envoy: its node's cluster). When a config
    declares no groups, one group named `default` holds every listener.
    """

    name: Name
    listeners: list[Name] = Field(min_length=1)


class Config(Model):
    """Everything a fleet of proxies should do. Validated as a whole by `validate_config`."""

    listeners: list[Listener] = Field(default_factory=list)
    clusters: list[Cluster] = Field(default_factory=list)
    node_groups: list[NodeGroup] = Field(default_factory=list)

    def group_names(self) -> list[str]:
        """The names of the node groups, in declaration order."""
        return [g.name for g in self.node_groups] or [DEFAULT_GROUP]

    def cluster(self, name: str) -> Cluster:
        """The cluster called `name` (KeyError when there is none)."""
        for cluster in self.clusters:
            if cluster.name == name:
                return cluster
        raise KeyError(name)

    def for_group(self, group: str) -> Config:
        """The part of the config a proxy of `group` runs: its listeners and the clusters they
        use, in declaration order. Unknown groups raise KeyError."""
        if not self.node_groups and group == DEFAULT_GROUP:
            listeners = list(self.listeners)
        else:
            wanted = next((g.listeners for g in self.node_groups if g.name == group), None)
            if wanted is None:
                raise KeyError(group)
            listeners = [lst for lst in self.listeners if lst.name in wanted]
        used = {name for listener in listeners for name in referenced_clusters(listener)}
        return Config(
            listeners=listeners,
            clusters=[c for c in self.clusters if c.name in used],
            node_groups=[],
        )


def referenced_clusters(listener: Listener) -> Iterator[str]:
    """Names of the clusters a listener sends traffic to."""
    if listener.default_cluster:
        yield listener.default_cluster
    for sni_route in listener.sni_routes:
        yield sni_route.cluster
    for vhost in listener.virtual_hosts:
        for route in vhost.routes:
            for backend in route.backends or ():
                yield backend.cluster
            for mirror in route.mirrors:
                yield mirror.cluster
