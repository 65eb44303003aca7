"""TLS termination: a model certificate as Envoy's DownstreamTlsContext."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2

from ..model import Certificate
from .common import packed

ALPN = ("h2", "http/1.1")
"""What an https listener offers in ALPN: HTTP/2 first, HTTP/1.1 otherwise."""


def downstream_tls_socket(certificate: Certificate) -> base_pb2.TransportSocket:
    """A transport socket that terminates TLS with `certificate`."""
    context = tls_pb2.DownstreamTlsContext(
        common_tls_context=tls_pb2.CommonTlsContext(
            tls_certificates=[
                common_pb2.TlsCertificate(
                    certificate_chain=base_pb2.DataSource(inline_string=certificate.cert),
                    private_key=base_pb2.DataSource(inline_string=certificate.key),
                )
            ],
            alpn_protocols=list(ALPN),
        )
    )
    return base_pb2.TransportSocket(
        name="envoy.transport_sockets.tls", typed_config=packed(context)
    )
