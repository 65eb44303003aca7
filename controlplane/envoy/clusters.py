"""Clusters and their endpoints: how Envoy reaches, balances over and checks backends.

Clusters whose endpoints are all IP addresses take their endpoints over EDS (the same ADS
stream), so an endpoint change pushes one ClusterLoadAssignment and leaves the cluster as it
is; clusters that name a host resolve it with STRICT_DNS and carry their endpoints inline.
"""

from __future__ import annotations

import ipaddress

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2
from envoy.config.core.v3 import base_pb2, health_check_pb2, protocol_pb2, proxy_protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.transport_sockets.proxy_protocol.v3 import upstream_proxy_protocol_pb2
from envoy.extensions.transport_sockets.raw_buffer.v3 import raw_buffer_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.v3 import http_pb2, percent_pb2, range_pb2
from google.protobuf import wrappers_pb2

from ..model import Cluster, HealthCheck, split_address
from .common import ads_source, duration, packed, socket_address

HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

_LB_POLICIES = {
    "round_robin": cluster_pb2.Cluster.ROUND_ROBIN,
    "least_request": cluster_pb2.Cluster.LEAST_REQUEST,
    "random": cluster_pb2.Cluster.RANDOM,
    "ring_hash": cluster_pb2.Cluster.RING_HASH,
    "maglev": cluster_pb2.Cluster.MAGLEV,
}


def uses_eds(cluster: Cluster) -> bool:
    """Whether every endpoint is an IP address, so endpoints can be sent over EDS."""
    for endpoint in cluster.endpoints:
        host, _ = split_address(endpoint.address)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return False
    return True


def load_assignment(cluster: Cluster) -> endpoint_pb2.ClusterLoadAssignment:
    """The endpoints of `cluster` with their weights, in one locality."""
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=cluster.name,
        endpoints=[
            endpoint_components_pb2.LocalityLbEndpoints(
                lb_endpoints=[
                    endpoint_components_pb2.LbEndpoint(
                        endpoint=endpoint_components_pb2.Endpoint(
                            address=socket_address(endpoint.address)
                        ),
                        load_balancing_weight=wrappers_pb2.UInt32Value(value=endpoint.weight),
                    )
                    for endpoint in cluster.endpoints
                ]
            )
        ],
    )


def cluster_resource(cluster: Cluster) -> cluster_pb2.Cluster:
    """The Envoy Cluster for a model cluster (endpoints inline only for DNS clusters)."""
    result = cluster_pb2.Cluster(
        name=cluster.name,
        connect_timeout=duration(cluster.connect_timeout),
        lb_policy=_LB_POLICIES[cluster.lb_policy],
        # Panic mode would send traffic to failing endpoints; the model says only passing
        # endpoints receive traffic.
        common_lb_config=cluster_pb2.Cluster.CommonLbConfig(
            healthy_panic_threshold=percent_pb2.Percent(value=0.0)
        ),
        circuit_breakers=circuit_breakers(cluster),
    )
    if uses_eds(cluster):
        result.type = cluster_pb2.Cluster.EDS
        result.eds_cluster_config.eds_config.CopyFrom(ads_source())
    else:
        result.type = cluster_pb2.Cluster.STRICT_DNS
        result.dns_lookup_family = cluster_pb2.Cluster.V4_PREFERRED
        result.load_assignment.CopyFrom(load_assignment(cluster))
    if cluster.protocol == "http2":
        options = http_protocol_options_pb2.HttpProtocolOptions(
            explicit_http_config=http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig(
                http2_protocol_options=protocol_pb2.Http2ProtocolOptions()
            )
        )
        result.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(packed(options))
    if cluster.health_check is not None:
        result.health_checks.append(health_check(cluster.health_check, cluster.protocol))
    if cluster.send_proxy_protocol:
        result.transport_socket.CopyFrom(proxy_protocol_socket())
    return result


def circuit_breakers(cluster: Cluster) -> circuit_breaker_pb2.CircuitBreakers:
    """The cluster's connection and request limits; beyond them Envoy answers 503 at once.

    A retry is a request: concurrent retries are bounded by `max_requests` too (Envoy's own
    default of 3 would refuse retries under load where HAProxy would not).
    """
    return circuit_breaker_pb2.CircuitBreakers(
        thresholds=[
            circuit_breaker_pb2.CircuitBreakers.Thresholds(
                max_connections=wrappers_pb2.UInt32Value(value=cluster.max_connections),
                max_pending_requests=wrappers_pb2.UInt32Value(value=cluster.max_pending_requests),
                max_requests=wrappers_pb2.UInt32Value(value=cluster.max_requests),
                max_retries=wrappers_pb2.UInt32Value(value=cluster.max_requests),
            )
        ]
    )


def proxy_protocol_socket() -> base_pb2.TransportSocket:
    """An upstream transport socket that starts each connection with a PROXY v2 header."""
    raw = base_pb2.TransportSocket(
        name="envoy.transport_sockets.raw_buffer", typed_config=packed(raw_buffer_pb2.RawBuffer())
    )
    config = upstream_proxy_protocol_pb2.ProxyProtocolUpstreamTransport(
        config=proxy_protocol_pb2.ProxyProtocolConfig(
            version=proxy_protocol_pb2.ProxyProtocolConfig.V2
        ),
        transport_socket=raw,
    )
    return base_pb2.TransportSocket(
        name="envoy.transport_sockets.upstream_proxy_protocol", typed_config=packed(config)
    )


def status_ranges(statuses: list[int]) -> list[range_pb2.Int64Range]:
    """Sorted statuses as half-open ranges, consecutive ones merged: [200, 201, 204] →
    [200, 202), [204, 205)."""
    ranges: list[range_pb2.Int64Range] = []
    for status in sorted(set(statuses)):
        if ranges and ranges[-1].end == status:
            ranges[-1].end = status + 1
        else:
            ranges.append(range_pb2.Int64Range(start=status, end=status + 1))
    return ranges


def health_check(check: HealthCheck, protocol: str) -> health_check_pb2.HealthCheck:
    """An active health check; checks run every `interval` whether or not traffic flows."""
    result = health_check_pb2.HealthCheck(
        timeout=duration(check.timeout),
        interval=duration(check.interval),
        no_traffic_interval=duration(check.interval),
        no_traffic_healthy_interval=duration(check.interval),
        unhealthy_threshold=wrappers_pb2.UInt32Value(value=check.unhealthy_threshold),
        healthy_threshold=wrappers_pb2.UInt32Value(value=check.healthy_threshold),
    )
    if check.kind == "http":
        result.http_health_check.CopyFrom(
            health_check_pb2.HealthCheck.HttpHealthCheck(
                path=check.path,
                expected_statuses=status_ranges(check.expected_statuses),
                codec_client_type=(
                    http_pb2.CodecClientType.HTTP2
                    if protocol == "http2"
                    else http_pb2.CodecClientType.HTTP1
                ),
            )
        )
    else:
        result.tcp_health_check.CopyFrom(health_check_pb2.HealthCheck.TcpHealthCheck())
    return result
