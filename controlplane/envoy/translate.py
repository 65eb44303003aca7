"""The Envoy compiler: a Config, a node group and what is known of the group in, that group's
xDS resources out.

A pure function: the same input gives byte-identical serialised resources. What it made of
each part that a change left as it was is reused (`memo`): a write compiles what it changed.
"""

from __future__ import annotations

from functools import partial

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2

from ..model import Cluster, Config, GroupFacts, Listener, check, referenced_clusters
from .clusters import cluster_resource, load_assignment, uses_eds
from .common import Affinities
from .listeners import listener_resource
from .memo import PartMemo
from .resources import Resources
from .routes import route_configuration

ClusterResources = tuple[cluster_pb2.Cluster, endpoint_pb2.ClusterLoadAssignment | None]

_CLUSTERS: PartMemo[Cluster, ClusterResources] = PartMemo()
_LISTENERS: PartMemo[Listener, listener_pb2.Listener] = PartMemo()
_ROUTES: PartMemo[Listener, route_pb2.RouteConfiguration] = PartMemo()
_LISTENER_CLUSTERS: PartMemo[Listener, tuple[str, ...]] = PartMemo()


def translate(config: Config, group: str, facts: GroupFacts = GroupFacts()) -> Resources:
    """The resources Envoys of node group `group` run, `facts` being what the fleet knows of
    the group (its size divides `scope: group` rate limits).

    Raises ConfigError when Envoy cannot express the config (`target_issues(config, "envoy")`)
    and KeyError for an unknown group.
    """
    check(config, "envoy")
    part = config.for_group(group)
    affinities = {c.name: c.hash_on for c in part.clusters}
    resources = Resources()
    for cluster in part.clusters:
        resource, assignment = _CLUSTERS.get(cluster, None, _cluster)
        resources.clusters[cluster.name] = resource
        if assignment is not None:
            resources.endpoints[cluster.name] = assignment
    for listener in part.listeners:
        read = affinities_read(listener, affinities)
        resources.listeners[listener.name] = _LISTENERS.get(
            listener, read, partial(listener_resource, affinities=affinities)
        )
        if listener.is_l7:
            resources.routes[listener.name] = _ROUTES.get(
                listener,
                (facts, read),
                partial(route_configuration, affinities=affinities, facts=facts),
            )
    return resources


def _cluster(cluster: Cluster) -> ClusterResources:
    return cluster_resource(cluster), load_assignment(cluster) if uses_eds(cluster) else None


def affinities_read(listener: Listener, affinities: Affinities) -> tuple[object, ...]:
    """What `listener` and its routes read of `affinities`: each of its clusters' entry."""
    names = _LISTENER_CLUSTERS.get(listener, None, _clusters_of)
    return tuple((name, affinities.get(name, False)) for name in names)


def _clusters_of(listener: Listener) -> tuple[str, ...]:
    return tuple(sorted(set(referenced_clusters(listener))))
