"""Who an xDS client may say it is: the node ids and groups its client certificate names.

Over mutual TLS a proxy proves an identity with its certificate, whose URI SANs say what it
may claim in its xDS node (`node.id`, and `node.cluster`, its group):

    spiffe://controlplane/group/<group>/node/<node-id>

`node/*` admits any node id of the group (a fleet sharing one certificate). A node id that is
not URI-safe is percent-encoded (`node_uri` writes it). A certificate may carry several such
URIs; other URIs are ignored. A stream whose node is not among them is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote

URI_PREFIX = "spiffe://controlplane/group/"
ANY_NODE = "*"


def node_uri(group: str, node_id: str = ANY_NODE) -> str:
    """The URI SAN that lets a certificate claim `node_id` (default: any node) of `group`."""
    node = ANY_NODE if node_id == ANY_NODE else quote(node_id, safe="")
    return f"{URI_PREFIX}{quote(group, safe='')}/node/{node}"


def _claim(uri: str) -> tuple[str, str] | None:
    if not uri.startswith(URI_PREFIX):
        return None
    parts = uri.removeprefix(URI_PREFIX).split("/")
    if len(parts) != 3 or parts[1] != "node" or not parts[0] or not parts[2]:
        return None
    node = parts[2] if parts[2] == ANY_NODE else unquote(parts[2])
    return unquote(parts[0]), node


@dataclass(frozen=True)
class PeerIdentity:
    """The (group, node id) pairs a client certificate lets a proxy claim (`*`: any node)."""

    uris: tuple[str, ...]
    claims: frozenset[tuple[str, str]]

    @classmethod
    def of_uris(cls, uris: Iterable[str]) -> PeerIdentity:
        """The identity given by a certificate's URI SANs."""
        uris = tuple(uris)
        return cls(uris, frozenset(c for c in map(_claim, uris) if c is not None))

    @classmethod
    def of_peer(cls, auth_context: Mapping[str, Iterable[bytes]]) -> PeerIdentity:
        """The identity of a gRPC peer: its certificate's URI SANs (`peer_uri`)."""
        return cls.of_uris(v.decode("utf-8", "replace") for v in auth_context.get("peer_uri", ()))

    def refusal(self, node_id: str, group: str) -> str | None:
        """Why this peer may not be node `node_id` of `group`; None when it may."""
        if node_id and ((group, node_id) in self.claims or (group, ANY_NODE) in self.claims):
            return None
        allowed = ", ".join(sorted(node_uri(g, n) for g, n in self.claims)) or (
            f"none: no URI SAN {URI_PREFIX}<group>/node/<node-id>"
        )
        return (
            f"node {node_id!r} of group {group!r} is not an identity its client certificate "
            f"names (it names: {allowed})"
        )
