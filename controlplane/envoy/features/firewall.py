"""Firewall policies: address rules of every listener (`addresses`), and the L7 rules and CRS
inspection of HTTP routes (`firewall`, the listener's or a route's own).

- Address rules: in the listener's filter chain match (`source_prefix_ranges`, an LC trie
  however long the lists), on the client address (the PROXY protocol source where the
  listener accepts it): a connection from a source in `deny`, or outside a non-empty
  `allow`, gets a chain that closes it as soon as it is accepted, before any byte is read or
  any upstream connection made. (A network RBAC filter decides on the first bytes the client
  sends, after `tcp_proxy` has connected upstream: a server-first protocol would have
  greeted the refused client.)
- L7 rules: the shared Lua core (`controlplane/firewall/lua`) in an `envoy.filters.http.lua`
  filter that is off by default and switched on by the routes whose firewall has L7 rules,
  for the requests that fire one of its triggers (`firewall_triggers`); the policy's data
  text (`controlplane.firewall.policy`) is the route's metadata, never code.
- CRS: `envoy.filters.http.ext_authz`, off by default, switched on by the routes with a crs,
  calling the verdict service over gRPC; the route tells it the policy in its context
  extensions. The `Host` header reaches the service as `:authority`; the service reads it
  so.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from envoy.config.core.v3 import (
    address_pb2,
    base_pb2,
    config_source_pb2,
    extension_pb2,
    grpc_service_pb2,
)
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.common.matching.v3 import extension_matcher_pb2
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2
from envoy.extensions.filters.http.lua.v3 import lua_pb2
from envoy.extensions.filters.network.direct_response.v3 import config_pb2 as direct_response_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.type.v3 import http_status_pb2
from google.protobuf import struct_pb2, wrappers_pb2

from ...firewall.policy import crs_policy_text, policy_text
from ...firewall.sources import lua_source
from ...firewall.triggers import triggers
from ...model import AddressRules, Crs, Listener, Route, effective_firewall, split_address
from ..common import duration, packed
from .base import Feature, RouteScope
from .firewall_triggers import NEVER_SKIPPING, skipping

DIRECT_RESPONSE = "envoy.filters.network.direct_response"
LUA = "envoy.filters.http.lua"
EXT_AUTHZ = "envoy.filters.http.ext_authz"


def _cidr(text: str) -> address_pb2.CidrRange:
    prefix, _, length = text.partition("/")
    return address_pb2.CidrRange(
        address_prefix=prefix, prefix_len=wrappers_pb2.UInt32Value(value=int(length))
    )


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def allowed_ranges(rules: AddressRules) -> list[Network]:
    """The `allow` ranges without the `deny` ones, so that no allowed range is more specific
    than a denied one it overlaps (Envoy picks the longest matching prefix; deny wins)."""
    denied = [ipaddress.ip_network(c) for c in rules.deny]
    result: list[Network] = []
    for text in rules.allow:
        pieces: list[Network] = [ipaddress.ip_network(text)]
        for deny in denied:
            next_pieces: list[Network] = []
            for piece in pieces:
                if piece.version != deny.version or not piece.overlaps(deny):
                    next_pieces.append(piece)
                elif not deny.supernet_of(piece):  # type: ignore[arg-type]
                    next_pieces.extend(piece.address_exclude(deny))  # type: ignore[arg-type]
            pieces = next_pieces
        result.extend(pieces)
    v4 = ipaddress.collapse_addresses(n for n in result if n.version == 4)
    v6 = ipaddress.collapse_addresses(n for n in result if n.version == 6)
    return [*v4, *v6]


def _refusing_chain(name: str, server_names: list[str], cidrs: list[str]) -> lc.FilterChain:
    match = lc.FilterChainMatch(server_names=server_names)
    match.source_prefix_ranges.extend(_cidr(c) for c in cidrs)
    closing = direct_response_pb2.Config()
    return lc.FilterChain(
        name=name,
        filter_chain_match=match,
        filters=[lc.Filter(name=DIRECT_RESPONSE, typed_config=packed(closing))],
    )


def apply_address_rules(listener: Listener, result: listener_pb2.Listener) -> None:
    """Refuse connections by source address, in the listener's filter chain match: chains
    that only sources allowed and not denied match, and chains that close a connection as
    soon as it is accepted (a direct response of nothing) for the others (the denied ones,
    or with an allow list every source it does not cover), one per set of server names (SNI
    comes before the source in Envoy's chain match). The default chain becomes a chain that
    matches any SNI, so that refused sources cannot reach it."""
    rules = listener.addresses
    if rules is None:
        return
    chains = list(result.filter_chains)
    if result.HasField("default_filter_chain"):
        chains.append(result.default_filter_chain)
        result.ClearField("default_filter_chain")
    allowed = [str(n) for n in allowed_ranges(rules)] if rules.allow else []
    if rules.allow and not allowed:
        chains = []
    for chain in chains:
        chain.filter_chain_match.source_prefix_ranges.extend(_cidr(c) for c in allowed)
    name_sets = sorted({tuple(c.filter_chain_match.server_names) for c in chains} | {()})
    refusing = []
    for index, names in enumerate(name_sets):
        if rules.deny and not rules.allow:
            refusing.append(_refusing_chain(f"refused-{index}", list(names), rules.deny))
        if rules.allow:
            refusing.append(_refusing_chain(f"not-allowed-{index}", list(names), []))
    del result.filter_chains[:]
    result.filter_chains.extend([*chains, *refusing])


def lua_filter() -> hcm.HttpFilter:
    """The firewall's Lua filter, off unless a route switches it on, under a matcher each such
    route gives."""
    lua = lua_pb2.Lua(default_source_code=base_pb2.DataSource(inline_string=lua_source("envoy")))
    config = extension_matcher_pb2.ExtensionWithMatcher(
        extension_config=extension_pb2.TypedExtensionConfig(name=LUA, typed_config=packed(lua)),
        xds_matcher=NEVER_SKIPPING,
    )
    return hcm.HttpFilter(name=LUA, typed_config=packed(config), disabled=True)


def ext_authz_filter(crs: Crs) -> hcm.HttpFilter:
    """The CRS filter calling the verdict service, off unless a route switches it on."""
    host, port = split_address(crs.service)
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    config = ext_authz_pb2.ExtAuthz(
        grpc_service=grpc_service_pb2.GrpcService(
            google_grpc=grpc_service_pb2.GrpcService.GoogleGrpc(
                target_uri=target, stat_prefix="waf"
            ),
            timeout=duration(crs.timeout),
        ),
        transport_api_version=config_source_pb2.ApiVersion.V3,
        failure_mode_allow=crs.failure == "open",
        status_on_error=http_status_pb2.HttpStatus(code=http_status_pb2.Forbidden),
    )
    if crs.max_body_bytes > 0:
        config.with_request_body.CopyFrom(
            ext_authz_pb2.BufferSettings(
                max_request_bytes=crs.max_body_bytes,
                allow_partial_message=True,
                pack_as_bytes=True,
            )
        )
    return hcm.HttpFilter(name=EXT_AUTHZ, typed_config=packed(config), disabled=True)


class FirewallFeature(Feature):
    name = "firewall"

    def listener(self, listener: Listener, result: listener_pb2.Listener) -> None:
        apply_address_rules(listener, result)

    def http_filters(self, listener: Listener) -> Iterable[hcm.HttpFilter]:
        filters = []
        if any(fw is not None and fw.has_l7_rules for fw in listener.route_firewalls()):
            filters.append(lua_filter())
        crs = listener.verdict_service()
        if crs is not None:
            filters.append(ext_authz_filter(crs))
        return filters

    def route(self, route: Route, result: rc.Route, scope: RouteScope) -> None:
        firewall = effective_firewall(scope.listener.firewall, route.firewall)
        if firewall is None:
            return
        text = policy_text(firewall)
        if text is not None:
            result.metadata.filter_metadata[LUA].CopyFrom(
                struct_pb2.Struct(fields={"policy": struct_pb2.Value(string_value=text)})
            )
            per_route = extension_matcher_pb2.ExtensionWithMatcherPerRoute(
                xds_matcher=skipping(triggers(firewall))
            )
            result.typed_per_filter_config[LUA].CopyFrom(
                packed(rc.FilterConfig(config=packed(per_route)))
            )
        crs_text = crs_policy_text(firewall)
        if crs_text is not None:
            per_route = ext_authz_pb2.ExtAuthzPerRoute(
                check_settings=ext_authz_pb2.CheckSettings(context_extensions={"policy": crs_text})
            )
            result.typed_per_filter_config[EXT_AUTHZ].CopyFrom(
                packed(rc.FilterConfig(config=packed(per_route)))
            )


FEATURE = FirewallFeature()
