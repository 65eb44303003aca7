"""The xDS resources of one node group, by kind and by type URL."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf import json_format
from google.protobuf.message import Message


@dataclass(frozen=True)
class Resources:
    """What one node group's Envoys receive, each resource keyed by its name.

    `endpoints` holds a ClusterLoadAssignment for each EDS cluster (DNS clusters carry their
    endpoints inline); `routes` a RouteConfiguration for each HTTP listener, named after it.
    """

    clusters: dict[str, cluster_pb2.Cluster] = field(default_factory=dict)
    endpoints: dict[str, endpoint_pb2.ClusterLoadAssignment] = field(default_factory=dict)
    listeners: dict[str, listener_pb2.Listener] = field(default_factory=dict)
    routes: dict[str, route_pb2.RouteConfiguration] = field(default_factory=dict)

    def kinds(self) -> dict[str, dict[str, Message]]:
        """The resources by kind (`clusters`, `endpoints`, `listeners`, `routes`), then name."""
        return {
            "clusters": dict(self.clusters),
            "endpoints": dict(self.endpoints),
            "listeners": dict(self.listeners),
            "routes": dict(self.routes),
        }

    def serialized(self) -> dict[str, dict[str, bytes]]:
        """Deterministic wire bytes of every resource, by kind and name."""
        return {
            kind: {name: msg.SerializeToString(deterministic=True) for name, msg in items.items()}
            for kind, items in self.kinds().items()
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view: kinds in a fixed order, each a list sorted by resource name."""
        return {
            kind: [
                json_format.MessageToDict(items[name], preserving_proto_field_name=True)
                for name in sorted(items)
            ]
            for kind, items in self.kinds().items()
        }

    def to_json(self) -> str:
        """`to_dict` as indented JSON text with sorted keys."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
