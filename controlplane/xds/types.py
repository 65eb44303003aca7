"""The xDS resource types served, their type URLs and the order additions are pushed in."""

from typing import Final

CLUSTER: Final = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT: Final = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER: Final = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE: Final = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"

PUSH_ORDER: Final[tuple[str, ...]] = (CLUSTER, ENDPOINT, LISTENER, ROUTE)
"""Additions go out in this order, so nothing arrives before what it refers to."""

WILDCARD_TYPES: Final[frozenset[str]] = frozenset({CLUSTER, LISTENER})
"""Types where an empty first subscription means "everything" and every response is complete."""

SHORT_NAMES: Final[dict[str, str]] = {
    CLUSTER: "cds",
    ENDPOINT: "eds",
    LISTENER: "lds",
    ROUTE: "rds",
}


def short_name(type_url: str) -> str:
    """`cds`, `eds`, `lds` or `rds` for a type URL; the URL itself for anything else."""
    return SHORT_NAMES.get(type_url, type_url)
