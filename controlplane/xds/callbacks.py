"""What the xDS server tells its observer about each stream, as go-control-plane's Callbacks.

The server knows nothing of who keeps the record (the fleet's ledger, a test, nobody): each
stream calls these as it binds to a node, hears from it, sends it a version, and hears the
ACK or NACK. Calls come from the server's event loop and must return quickly.
"""

from __future__ import annotations

from typing import Protocol


class StreamCallbacks(Protocol):
    """An observer of xDS streams. Node ids are what the node says (or `anonymous-PID-N`:
    the serving process and its stream number)."""

    def connected(self, node_id: str, group: str) -> None:
        """A stream of `node_id`, a node of `group`, opened (its first request arrived)."""
        ...

    def disconnected(self, node_id: str) -> None:
        """A stream of `node_id` closed."""
        ...

    def described(self, node_id: str, admin: str) -> None:
        """`node_id` announced its admin interface at `admin` (`ip:port`, in its metadata)."""
        ...

    def requested(self, node_id: str) -> None:
        """`node_id` sent a request (a sign of life)."""
        ...

    def subscribed(self, node_id: str, type_url: str) -> None:
        """`node_id` subscribed to a type for the first time on this stream."""
        ...

    def sent(self, node_id: str, type_url: str, version: str, snapshot: str) -> None:
        """`version` of a type, what group snapshot `snapshot` gives the node, was sent."""
        ...

    def acked(self, node_id: str, type_url: str, version: str) -> None:
        """The node accepted `version` of a type (or already held it when it reconnected)."""
        ...

    def nacked(self, node_id: str, type_url: str, version: str, error: str) -> None:
        """The node refused `version` of a type, saying `error` (opaque text)."""
        ...

    def synced(self, node_id: str, type_url: str, snapshot: str) -> None:
        """What the node holds of a type is what group snapshot `snapshot` gives it."""
        ...


class NoCallbacks:
    """An observer that keeps nothing: a server nobody watches."""

    def connected(self, node_id: str, group: str) -> None:
        return None

    def disconnected(self, node_id: str) -> None:
        return None

    def described(self, node_id: str, admin: str) -> None:
        return None

    def requested(self, node_id: str) -> None:
        return None

    def subscribed(self, node_id: str, type_url: str) -> None:
        return None

    def sent(self, node_id: str, type_url: str, version: str, snapshot: str) -> None:
        return None

    def acked(self, node_id: str, type_url: str, version: str) -> None:
        return None

    def nacked(self, node_id: str, type_url: str, version: str, error: str) -> None:
        return None

    def synced(self, node_id: str, type_url: str, snapshot: str) -> None:
        return None
