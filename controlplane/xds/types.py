"""The xDS resource types served: their type URLs, and the order additions are pushed in.

The one place type URLs are made: from the protobuf message types (`type_url_of`).
"""

from typing import Final

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf.message import Message

PREFIX: Final = "type.googleapis.com/"


def type_url_of(message: Message | type[Message]) -> str:
    """The type URL of a message or message type: `type.googleapis.com/<full name>`."""
    return PREFIX + message.DESCRIPTOR.full_name


CLUSTER: Final = type_url_of(cluster_pb2.Cluster)
ENDPOINT: Final = type_url_of(endpoint_pb2.ClusterLoadAssignment)
LISTENER: Final = type_url_of(listener_pb2.Listener)
ROUTE: Final = type_url_of(route_pb2.RouteConfiguration)

MESSAGES: Final[dict[str, type[Message]]] = {
    CLUSTER: cluster_pb2.Cluster,
    ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
    LISTENER: listener_pb2.Listener,
    ROUTE: route_pb2.RouteConfiguration,
}


def message_type(type_url: str) -> type[Message]:
    """The message type a served type URL holds (KeyError for a type not served)."""
    return MESSAGES[type_url]


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
