"""Route tables: one RouteConfiguration per HTTP listener, one VirtualHost per model host.

Routes are listed in `ordered_routes` order, since Envoy takes the first route that matches.
Large hosts are compiled into a matcher tree instead (see `matcher_tree`).
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from google.protobuf import wrappers_pb2

from ..model import (
    GroupFacts,
    HashCookie,
    HashOn,
    Listener,
    Route,
    RouteId,
    VirtualHost,
    ordered_routes,
    route_ids,
    split_address,
)
from . import matcher_tree
from .common import Affinities, duration
from .features import FEATURES, RouteScope
from .features.headers import set_header
from .matches import re2_escape, route_match
from .memo import PartMemo
from .sessions import session_cookie_config

_REDIRECT_CODES = {
    301: rc.RedirectAction.MOVED_PERMANENTLY,
    302: rc.RedirectAction.FOUND,
    303: rc.RedirectAction.SEE_OTHER,
    307: rc.RedirectAction.TEMPORARY_REDIRECT,
    308: rc.RedirectAction.PERMANENT_REDIRECT,
}

ENVOY_ADDRESS_HEADERS = ("x-envoy-external-address", "x-envoy-internal")
"""What Envoy's connection manager adds about the client that HAProxy would not send."""

CLIENT_ADDRESS = "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"
"""The client's address: the peer's, or the one a PROXY protocol header gave."""


def route_configuration(
    listener: Listener, affinities: Affinities, facts: GroupFacts
) -> route_pb2.RouteConfiguration:
    """The routes of an HTTP listener, named after it.

    X-Forwarded-For is appended here rather than by the connection manager, which appends
    the host's own address instead of a loopback client's.
    """
    own = listener.model_copy(update={"virtual_hosts": []})
    own_key = own.model_dump_json()

    def compiled(vhost: VirtualHost) -> rc.VirtualHost:
        key = (own_key, facts, affinities_read(vhost, affinities))
        return _VHOSTS.get(
            vhost, key, lambda v: virtual_host(v, affinities, RouteScope(own, v, facts))
        )

    vhosts = [compiled(vhost) for vhost in listener.virtual_hosts]
    if not any("*" in vhost.domains for vhost in listener.virtual_hosts):
        vhosts.append(
            rc.VirtualHost(name=COMMA_HOSTS, domains=["*"], routes=[host_with_a_comma(COMMA_HOSTS)])
        )
    result = route_pb2.RouteConfiguration(
        name=listener.name,
        virtual_hosts=vhosts,
        request_headers_to_remove=list(ENVOY_ADDRESS_HEADERS),
    )
    if listener.forwarded_for:
        result.request_headers_to_add.append(
            base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key="x-forwarded-for", value=CLIENT_ADDRESS),
                append_action=base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD,
            )
        )
    return result


_VHOSTS: PartMemo[VirtualHost, rc.VirtualHost] = PartMemo()
"""Each virtual host compiled, by its listener's own settings, the group's facts and the
affinities of its clusters: a write recompiles the hosts it changed."""

_VHOST_CLUSTERS: PartMemo[VirtualHost, tuple[str, ...]] = PartMemo()


def affinities_read(vhost: VirtualHost, affinities: Affinities) -> tuple[object, ...]:
    """What `vhost`'s routes read of `affinities`: each of their clusters' entry, if any."""
    names = _VHOST_CLUSTERS.get(vhost, None, _clusters_of)
    return tuple((name, affinities.get(name, False)) for name in names)


def _clusters_of(vhost: VirtualHost) -> tuple[str, ...]:
    return tuple(sorted({b.cluster for r in vhost.routes for b in r.backends or ()}))


def virtual_host(vhost: VirtualHost, affinities: Affinities, scope: RouteScope) -> rc.VirtualHost:
    """A model virtual host (`scope.vhost`): a plain route list, or a matcher tree when it is
    large."""
    names = {id(r): route_name(rid) for r, rid in zip(vhost.routes, route_ids(vhost), strict=True)}

    def build(model_route: Route) -> rc.Route:
        return route(model_route, names[id(model_route)], affinities, scope)

    result = rc.VirtualHost(name=vhost.name, domains=list(vhost.domains))
    refusing = host_with_a_comma(vhost.name)
    tree = matcher_tree.tree_for(vhost, build, matcher_tree.TREE_MIN_ROUTES)
    if tree is not None:
        result.matcher.CopyFrom(matcher_tree.first_when(*HOLDING_A_COMMA, refusing, tree))
    else:
        result.routes.extend([refusing, *(build(r) for r in ordered_routes(vhost.routes))])
    return result


HOLDING_A_COMMA = (":authority", ",")
"""The request header, and what it holds, that `host_with_a_comma` refuses."""

COMMA_HOSTS = "~host-with-a-comma"
"""The virtual host, on a listener without a `*` host, that takes the Hosts holding a comma
the listener's domains do not (a `~` is in no model name); it has no other route, so any
other Host it takes finds no route, as it would find no host: 404."""


def host_with_a_comma(vhost_name: str) -> rc.Route:
    """The route every virtual host begins with: 400 for a Host holding a comma, whichever
    host its text would reach. Envoy joins several Host headers with commas into one, where
    HAProxy refuses them (when they differ)."""
    header, holding = HOLDING_A_COMMA
    return rc.Route(
        name=f"{vhost_name}/host-with-a-comma",
        match=rc.RouteMatch(
            prefix="/",
            headers=[
                rc.HeaderMatcher(
                    name=header, string_match=string_pb2.StringMatcher(contains=holding)
                )
            ],
        ),
        direct_response=rc.DirectResponseAction(status=400),
    )


def route_name(rid: RouteId) -> str:
    """A route's name in Envoy: its own, or its host and position when it has none."""
    return rid.name or f"{rid.vhost}/{rid.index}"


WEIGHTLESS_STATUS = 500
"""The answer of a route whose backends all weigh 0, as the Gateway API says."""


def route(model_route: Route, name: str, affinities: Affinities, scope: RouteScope) -> rc.Route:
    """One Envoy route: the match and one action, then what each feature adds."""
    result = rc.Route(name=name, match=route_match(model_route.match))
    if model_route.weightless:
        result.direct_response.status = WEIGHTLESS_STATUS
    elif model_route.backends is not None:
        result.route.CopyFrom(route_action(model_route, affinities))
        cookie = affinity_cookie(model_route, affinities)
        if cookie is not None:
            name, config = session_cookie_config(cookie)
            result.typed_per_filter_config[name].CopyFrom(config)
    elif model_route.redirect is not None:
        result.redirect.CopyFrom(redirect_action(model_route, scope.listener))
    elif model_route.direct_response is not None:
        answer = model_route.direct_response
        result.direct_response.status = answer.status
        if answer.body:
            result.direct_response.body.inline_string = answer.body
        result.response_headers_to_add.append(set_header("content-type", answer.content_type))
    for feature in FEATURES:
        feature.route(model_route, result, scope)
    return result


def route_action(model_route: Route, affinities: Affinities) -> rc.RouteAction:
    """Forwarding: weighted clusters, hashing, the timeout of all attempts, rewrite, upgrades."""
    backends = model_route.backends or []
    attempts = 1 + (model_route.retries.attempts if model_route.retries else 0)
    action = rc.RouteAction(timeout=duration(model_route.timeout * attempts))
    if len(backends) == 1 and not model_route.mutates_per_backend:
        action.cluster = backends[0].cluster
    else:
        action.weighted_clusters.clusters.extend(
            rc.WeightedCluster.ClusterWeight(
                name=b.cluster, weight=wrappers_pb2.UInt32Value(value=b.weight)
            )
            for b in backends
        )
    hash_on = route_hash_on(model_route, affinities)
    if hash_on is not None and hash_on.hashes:
        action.hash_policy.append(hash_policy(hash_on))
    if model_route.prefix_rewrite is not None:
        prefix_rewrite(action, model_route, model_route.prefix_rewrite)
    elif model_route.path_rewrite is not None:
        action.regex_rewrite.pattern.CopyFrom(regex_pb2.RegexMatcher(regex="^.*$"))
        action.regex_rewrite.substitution = model_route.path_rewrite
    if model_route.websocket:
        action.upgrade_configs.append(
            rc.RouteAction.UpgradeConfig(
                upgrade_type="websocket", enabled=wrappers_pb2.BoolValue(value=True)
            )
        )
    return action


def route_hash_on(model_route: Route, affinities: Affinities) -> HashOn | None:
    """The affinity of the route's clusters (they agree: see the model's validation)."""
    backends = model_route.backends or []
    return next((affinities[b.cluster] for b in backends if b.cluster in affinities), None)


def affinity_cookie(model_route: Route, affinities: Affinities) -> HashCookie | None:
    """The cookie that keeps a client on its endpoint, for a route to cookie clusters."""
    hash_on = route_hash_on(model_route, affinities)
    return hash_on.cookie if hash_on is not None else None


def hash_policy(hash_on: HashOn) -> rc.RouteAction.HashPolicy:
    """The request key of a hashing cluster: a header or the client's address."""
    if hash_on.header is not None:
        return rc.RouteAction.HashPolicy(
            header=rc.RouteAction.HashPolicy.Header(header_name=hash_on.header)
        )
    return rc.RouteAction.HashPolicy(
        connection_properties=rc.RouteAction.HashPolicy.ConnectionProperties(source_ip=True)
    )


def prefix_rewrite(
    action: rc.RouteAction | rc.RedirectAction, model_route: Route, target: str
) -> None:
    """Replace the matched prefix with `target`, element by element (the Gateway API's
    ReplacePrefixMatch): with prefix `/api` and target `/v2`, `/api/x` → `/v2/x`; with target
    `/`, → `/x`. Forwarding routes rewrite the request, redirects their Location."""
    prefix = model_route.match.path.normalized_prefix or "/"
    rewrite = target.rstrip("/") or "/"
    if prefix == "/":
        action.prefix_rewrite = rewrite if rewrite == "/" else rewrite + "/"
    elif rewrite == "/":
        action.regex_rewrite.pattern.CopyFrom(
            regex_pb2.RegexMatcher(regex=f"^{re2_escape(prefix)}/*")
        )
        action.regex_rewrite.substitution = "/"
    else:
        action.prefix_rewrite = rewrite


def redirect_action(model_route: Route, listener: Listener) -> rc.RedirectAction:
    """A redirect that keeps the request's own host and path where unset, its scheme and
    port as `redirect_port` says (the request's Host reaches routing without its port)."""
    assert model_route.redirect is not None
    redirect = model_route.redirect
    action = rc.RedirectAction(response_code=_REDIRECT_CODES[redirect.status])
    if redirect.scheme is not None:
        action.scheme_redirect = redirect.scheme
    if redirect.host is not None:
        action.host_redirect = redirect.host
    _, port = redirect.scheme_and_port(listener.scheme, split_address(listener.address).port)
    if port is not None:
        action.port_redirect = port
    if redirect.path is not None:
        action.path_redirect = redirect.path
    elif redirect.prefix_rewrite is not None:
        prefix_rewrite(action, model_route, redirect.prefix_rewrite)
    return action
