"""Small hand-built xDS resources (xds-protos) for tests: listener, routes, cluster, endpoints."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.type.matcher.v3 import regex_pb2
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message

from controlplane.xds.cache import Snapshot


def packed(message: Message) -> any_pb2.Any:
    """`message` in an Any, serialised deterministically (stable content hashes)."""
    out = any_pb2.Any()
    out.Pack(message, deterministic=True)
    return out


def ads_source() -> config_source_pb2.ConfigSource:
    """A config source meaning "over the ADS stream"."""
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.ApiVersion.V3,
    )


def socket(host: str, port: int) -> address_pb2.Address:
    """A TCP socket address."""
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=host, port_value=port)
    )


def http_listener(name: str, port: int, route_config: str) -> listener_pb2.Listener:
    """An HTTP listener on 127.0.0.1:port whose routes come over ADS (RDS)."""
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix=name,
        rds=hcm_pb2.Rds(config_source=ads_source(), route_config_name=route_config),
        http_filters=[
            hcm_pb2.HttpFilter(
                name="envoy.filters.http.router", typed_config=packed(router_pb2.Router())
            )
        ],
    )
    return listener_pb2.Listener(
        name=name,
        address=socket("127.0.0.1", port),
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[
                    listener_components_pb2.Filter(
                        name="envoy.filters.network.http_connection_manager",
                        typed_config=packed(manager),
                    )
                ]
            )
        ],
    )


def route_config(
    name: str, routes: Sequence[tuple[str, str]], bad_regex: str | None = None
) -> route_pb2.RouteConfiguration:
    """Prefix → cluster routes in one virtual host; `bad_regex` adds a route Envoy refuses."""
    entries = [
        route_components_pb2.Route(
            match=route_components_pb2.RouteMatch(prefix=prefix),
            route=route_components_pb2.RouteAction(cluster=cluster),
        )
        for prefix, cluster in routes
    ]
    if bad_regex is not None:
        entries.insert(
            0,
            route_components_pb2.Route(
                match=route_components_pb2.RouteMatch(
                    safe_regex=regex_pb2.RegexMatcher(regex=bad_regex)
                ),
                route=route_components_pb2.RouteAction(cluster=routes[0][1]),
            ),
        )
    return route_pb2.RouteConfiguration(
        name=name,
        virtual_hosts=[route_components_pb2.VirtualHost(name=name, domains=["*"], routes=entries)],
    )


def eds_cluster(name: str, connect_timeout_ms: int = 1000) -> cluster_pb2.Cluster:
    """A cluster whose endpoints come over ADS (EDS)."""
    return cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(eds_config=ads_source()),
        connect_timeout=duration_pb2.Duration(
            seconds=connect_timeout_ms // 1000, nanos=(connect_timeout_ms % 1000) * 1_000_000
        ),
    )


def load_assignment(
    cluster: str, endpoints: Iterable[tuple[str, int]]
) -> endpoint_pb2.ClusterLoadAssignment:
    """The endpoints of a cluster."""
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=cluster,
        endpoints=[
            endpoint_components_pb2.LocalityLbEndpoints(
                lb_endpoints=[
                    endpoint_components_pb2.LbEndpoint(
                        endpoint=endpoint_components_pb2.Endpoint(address=socket(host, port))
                    )
                    for host, port in endpoints
                ]
            )
        ],
    )


def http_snapshot(
    listener_port: int,
    backends: dict[str, int],
    routes: Sequence[tuple[str, str]],
    *,
    clusters: Iterable[str] | None = None,
    bad_regex: str | None = None,
    version: str | None = None,
) -> Snapshot:
    """One listener, one route config, and an EDS cluster per backend name (default: all)."""
    names = list(clusters) if clusters is not None else list(backends)
    messages: list[Message] = [
        http_listener("http", listener_port, "routes"),
        route_config("routes", routes, bad_regex),
    ]
    for n in names:
        messages.append(eds_cluster(n))
        messages.append(load_assignment(n, [("127.0.0.1", backends[n])]))
    return Snapshot.from_messages(messages, version)
