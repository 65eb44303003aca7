"""What a client certificate lets a proxy claim: its URI SANs name group and node id."""

from __future__ import annotations

from controlplane.xds.identity import PeerIdentity, node_uri


def test_a_certificate_names_the_node_ids_and_groups_it_may_claim() -> None:
    peer = PeerIdentity.of_uris(
        [
            "spiffe://controlplane/group/edge/node/edge-1",
            "spiffe://controlplane/group/inner/node/*",
            "spiffe://elsewhere/group/edge/node/edge-2",  # another trust domain: ignored
            "urn:example:edge-3",
        ]
    )

    assert peer.refusal("edge-1", "edge") is None
    assert peer.refusal("anything", "inner") is None
    for node, group in [("edge-2", "edge"), ("edge-3", "edge"), ("edge-1", "default")]:
        refusal = peer.refusal(node, group)
        assert refusal is not None and f"node {node!r} of group {group!r}" in refusal
    assert peer.refusal("", "inner") is not None  # a node must say who it is


def test_node_ids_that_are_not_uri_safe_are_percent_encoded() -> None:
    uri = node_uri("edge", "host a/b")
    assert uri == "spiffe://controlplane/group/edge/node/host%20a%2Fb"
    assert PeerIdentity.of_uris([uri]).refusal("host a/b", "edge") is None


def test_a_certificate_without_such_uris_names_nothing() -> None:
    refusal = PeerIdentity.of_peer({"peer_dns": [b"edge-1"]}).refusal("edge-1", "default")
    assert refusal is not None and "no URI SAN spiffe://controlplane/group/" in refusal
