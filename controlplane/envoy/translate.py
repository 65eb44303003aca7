"""The Envoy compiler: a Config, a node group and what is known of the group in, that group's
xDS resources out.

A pure function: the same input gives byte-identical serialised resources.
"""

from __future__ import annotations

from ..model import Config, GroupFacts, check
from .clusters import cluster_resource, load_assignment, uses_eds
from .listeners import listener_resource
from .resources import Resources
from .routes import route_configuration


def translate(config: Config, group: str, facts: GroupFacts = GroupFacts()) -> Resources:
    """The resources Envoys of node group `group` run, `facts` being what the fleet knows of
    the group (its size divides `scope: group` rate limits).

    Raises ConfigError when Envoy cannot express the config (`target_issues(config, "envoy")`)
    and KeyError for an unknown group.
    """
    check(config, "envoy")
    part = config.for_group(group)
    clusters = {c.name: c for c in part.clusters}
    resources = Resources()
    for cluster in part.clusters:
        resources.clusters[cluster.name] = cluster_resource(cluster)
        if uses_eds(cluster):
            resources.endpoints[cluster.name] = load_assignment(cluster)
    for listener in part.listeners:
        resources.listeners[listener.name] = listener_resource(listener, clusters)
        if listener.is_l7:
            resources.routes[listener.name] = route_configuration(listener, clusters, facts)
    return resources
