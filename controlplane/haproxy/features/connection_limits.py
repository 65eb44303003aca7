"""A listener's `max_connections`: each connection accepted beyond it is closed at once, as
Envoy's connection limit filter does (`fe_conn` counts the connection being accepted).

HAProxy never holds more connections than its global `maxconn` either (derived from its file
descriptor limit when unset); past that, new connections wait in the kernel's backlog.
"""

from __future__ import annotations

from ..scopes import ListenerScope
from .base import Feature


class ConnectionLimits(Feature):
    name = "connection_limits"

    def frontend(self, scope: ListenerScope) -> int:
        return scope.listener.max_connections
