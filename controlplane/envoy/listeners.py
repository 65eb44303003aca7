"""Listeners: where Envoy accepts connections and the filter chains that handle them.

- `http`: one chain with the HTTP connection manager, routes over RDS (ADS).
- `https`: the same connection manager behind TLS: one chain per certificate chosen by SNI
  (`server_names`), and a default chain with the first certificate.
- `tcp`: one chain proxying every connection to `default_cluster`.
- `tls`: TLS passthrough: the SNI read by `tls_inspector` picks a chain per SNI route; the
  default chain goes to `default_cluster` when there is one.
"""

from __future__ import annotations

from envoy.config.core.v3 import protocol_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.listener.proxy_protocol.v3 import proxy_protocol_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf import wrappers_pb2

from ..model import Listener
from .common import Affinities, ads_source, packed, socket_address
from .features import FEATURES
from .sessions import session_filter, uses_session_cookies
from .tls import downstream_tls_socket

HCM = "envoy.filters.network.http_connection_manager"
TCP_PROXY = "envoy.filters.network.tcp_proxy"
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
PROXY_PROTOCOL = "envoy.filters.listener.proxy_protocol"
ROUTER = "envoy.filters.http.router"

DEFAULT_CHAIN = "default"
"""The filter chain taking what no server name picks: the first certificate, or the
passthrough listener's default cluster."""


def certificate_chain(index: int) -> str:
    """The name of the filter chain serving `certificates[index]` by SNI."""
    return f"certificate-{index}"


def sni_chain(index: int) -> str:
    """The name of the filter chain of `sni_routes[index]`."""
    return f"sni-{index}"


def listener_resource(listener: Listener, affinities: Affinities) -> listener_pb2.Listener:
    """The Envoy Listener for a model listener. It binds without SO_REUSEPORT: a port another
    process holds is a NACK, never a share of that process's connections."""
    result = listener_pb2.Listener(
        name=listener.name,
        address=socket_address(listener.address),
        enable_reuse_port=wrappers_pb2.BoolValue(value=False),
    )
    if listener.accept_proxy_protocol:
        result.listener_filters.append(
            lc.ListenerFilter(
                name=PROXY_PROTOCOL, typed_config=packed(proxy_protocol_pb2.ProxyProtocol())
            )
        )
    if listener.protocol in ("https", "tls"):
        result.listener_filters.append(
            lc.ListenerFilter(
                name=TLS_INSPECTOR, typed_config=packed(tls_inspector_pb2.TlsInspector())
            )
        )
    if listener.protocol == "http":
        result.filter_chains.append(
            lc.FilterChain(filters=filters(listener, http_filter(listener, affinities)))
        )
    elif listener.protocol == "https":
        https_chains(result, listener, affinities)
    elif listener.protocol == "tcp":
        assert listener.default_cluster is not None
        result.filter_chains.append(
            lc.FilterChain(
                filters=filters(
                    listener, tcp_filter(listener.name, listener.default_cluster, affinities)
                )
            )
        )
    else:
        passthrough_chains(result, listener, affinities)
    for feature in FEATURES:
        feature.listener(listener, result)
    return result


def https_chains(result: listener_pb2.Listener, listener: Listener, affinities: Affinities) -> None:
    """A chain per certificate that names servers, and the first certificate by default."""
    for index, certificate in enumerate(listener.certificates):
        if not certificate.server_names:
            continue
        result.filter_chains.append(
            lc.FilterChain(
                name=certificate_chain(index),
                filter_chain_match=lc.FilterChainMatch(server_names=certificate.server_names),
                filters=filters(listener, http_filter(listener, affinities)),
                transport_socket=downstream_tls_socket(certificate),
            )
        )
    result.default_filter_chain.CopyFrom(
        lc.FilterChain(
            name=DEFAULT_CHAIN,
            filters=filters(listener, http_filter(listener, affinities)),
            transport_socket=downstream_tls_socket(listener.certificates[0]),
        )
    )


def passthrough_chains(
    result: listener_pb2.Listener, listener: Listener, affinities: Affinities
) -> None:
    """A chain per SNI route, and one for `default_cluster` when it is set."""
    for index, sni_route in enumerate(listener.sni_routes):
        result.filter_chains.append(
            lc.FilterChain(
                name=sni_chain(index),
                filter_chain_match=lc.FilterChainMatch(server_names=sni_route.server_names),
                filters=filters(listener, tcp_filter(listener.name, sni_route.cluster, affinities)),
            )
        )
    if listener.default_cluster is not None:
        result.default_filter_chain.CopyFrom(
            lc.FilterChain(
                name=DEFAULT_CHAIN,
                filters=filters(
                    listener, tcp_filter(listener.name, listener.default_cluster, affinities)
                ),
            )
        )


def filters(listener: Listener, last: lc.Filter) -> list[lc.Filter]:
    """A filter chain's network filters: what the features add, then `last` (which proxies)."""
    return [*(f for feature in FEATURES for f in feature.network_filters(listener)), last]


def tcp_filter(stat_prefix: str, cluster: str, affinities: Affinities) -> lc.Filter:
    """Proxy the connection's bytes to `cluster`, hashing the client address when it hashes."""
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=stat_prefix, cluster=cluster)
    if affinities[cluster] is not None:
        proxy.hash_policy.add().source_ip.SetInParent()
    return lc.Filter(name=TCP_PROXY, typed_config=packed(proxy))


def http_filter(listener: Listener, affinities: Affinities) -> lc.Filter:
    """The HTTP connection manager of an L7 listener, routes from RDS named after it.

    Envoy adds no header HAProxy would not: no `x-envoy-*` upstream (the router suppresses
    them, the route configuration removes the client-address ones), no `server` header of its
    own, and `x-request-id` only when `request_id` is set (a client's own id is kept). The
    client address is the connection's (or PROXY protocol's): no X-Forwarded-For is trusted,
    and the route configuration appends to it when `forwarded_for` is set. X-Forwarded-Proto
    is set to the scheme the client used (a client's own is replaced), as HAProxy sets it.
    """
    sessions = [session_filter()] if uses_session_cookies(listener, affinities) else []
    manager = hcm.HttpConnectionManager(
        stat_prefix=listener.name,
        codec_type=hcm.HttpConnectionManager.AUTO,
        rds=hcm.Rds(config_source=ads_source(), route_config_name=listener.name),
        http_filters=[
            *(f for feature in FEATURES for f in feature.http_filters(listener)),
            *sessions,
            hcm.HttpFilter(
                name=ROUTER, typed_config=packed(router_pb2.Router(suppress_envoy_headers=True))
            ),
        ],
        strip_any_host_port=True,
        server_header_transformation=hcm.HttpConnectionManager.PASS_THROUGH,
        generate_request_id=wrappers_pb2.BoolValue(value=listener.request_id),
        preserve_external_request_id=True,
        use_remote_address=wrappers_pb2.BoolValue(value=True),
        xff_num_trusted_hops=0,
        skip_xff_append=True,
        http_protocol_options=protocol_pb2.Http1ProtocolOptions(
            accept_http_10=True, allow_chunked_length=True
        ),
    )
    return lc.Filter(name=HCM, typed_config=packed(manager))
