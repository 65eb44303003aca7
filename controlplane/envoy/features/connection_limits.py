"""A listener's `max_connections`: Envoy's connection limit filter closes each connection
accepted beyond it, at once.

The filter counts the connections of its filter chain: a listener with several chains (an
https listener choosing certificates by SNI, a tls listener routing by SNI) holds the limit
once per chain.
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.extensions.filters.network.connection_limit.v3 import connection_limit_pb2
from google.protobuf import wrappers_pb2

from ...model import Listener
from ..common import packed
from .base import Feature

CONNECTION_LIMIT = "envoy.filters.network.connection_limit"


class ConnectionLimits(Feature):
    """`max_connections` of listeners."""

    name = "connection_limits"

    def network_filters(self, listener: Listener) -> Iterable[lc.Filter]:
        limit = connection_limit_pb2.ConnectionLimit(
            stat_prefix=listener.name,
            max_connections=wrappers_pb2.UInt64Value(value=listener.max_connections),
        )
        yield lc.Filter(name=CONNECTION_LIMIT, typed_config=packed(limit))


FEATURE = ConnectionLimits()
