"""L4 or L7? The decision framework applied to a config: `advise(config)`.

Per listener: the layer it runs at, and the features of the config that need L7 (each with
its field path), or that nothing does, so it could run at L4; the traps that catch people at
either layer; and whether a two-tier layout (an L4 tier in front of an L7 group) fits, with
the node groups it would use.

A feature *needs* L7 when no L4 proxy can provide it at all (routing by path, terminating
TLS); it *prefers* L7 when L4 has a substitute (the PROXY protocol instead of
X-Forwarded-For). New policies (rate limits by URL or user, WAF rules) add a detector to
`DETECTORS`. What L4 would save is measured, not stated here: `controlplane bench l4-vs-l7`
measures it and `controlplane advise` cites those figures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from .config import Config
from .errors import format_path
from .firewall import Firewall
from .kinds import DEFAULT_GROUP
from .listener import Listener
from .route import Route
from .types import format_duration, split_address

DEFAULT_TIMEOUT_MS = 15_000


@dataclass(frozen=True)
class Need:
    """A feature of the config that only an L7 proxy provides (`hard`), or that L7 provides
    better than L4's substitute (`substitute` says what L4 would do instead)."""

    feature: str
    where: str
    detail: str
    hard: bool = True
    substitute: str | None = None


@dataclass(frozen=True)
class AtL4:
    """A feature of the listener that an L4 proxy enforces as well (it stays if the listener
    moves to L4, and costs no L7 parsing where it is)."""

    feature: str
    where: str
    detail: str


@dataclass(frozen=True)
class Trap:
    """A configuration that does not do what it seems to, and what to do instead."""

    kind: str
    where: str
    message: str


@dataclass(frozen=True)
class ListenerAdvice:
    """One listener: its layer, what needs L7 in it, whether it could run at L4 and how."""

    listener: str
    protocol: str
    layer: str
    needs: list[Need] = field(default_factory=list)
    could_run_at_l4: bool = False
    suggestion: str = ""
    traps: list[Trap] = field(default_factory=list)
    at_l4: list[AtL4] = field(default_factory=list)


@dataclass(frozen=True)
class TwoTier:
    """Whether an L4 tier in front of an L7 group fits: `in_place` when the config already
    is one; `groups` the node groups each tier uses (existing or proposed) and the listeners
    of each."""

    fits: bool
    in_place: bool
    reason: str
    groups: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Advice:
    listeners: list[ListenerAdvice]
    two_tier: TwoTier

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


# -- what needs L7 ---------------------------------------------------------------------------

Detector = Callable[[Config, int, Listener], Iterator[Need]]


def _routes(index: int, listener: Listener) -> Iterator[tuple[str, Route]]:
    for vi, vhost in enumerate(listener.virtual_hosts):
        for ri, route in enumerate(vhost.routes):
            yield f"listeners[{index}].virtual_hosts[{vi}].routes[{ri}]", route


def host_routing(config: Config, index: int, listener: Listener) -> Iterator[Need]:
    """Virtual hosts chosen by the Host header."""
    domains = [d for v in listener.virtual_hosts for d in v.domains]
    if domains and domains != ["*"]:
        names = ", ".join(domains[:4]) + (", ..." if len(domains) > 4 else "")
        yield Need("Host routing", f"listeners[{index}].virtual_hosts", f"domains {names}")


def request_routing(config: Config, index: int, listener: Listener) -> Iterator[Need]:
    """Routes chosen by what is inside the request: path, method, headers, query, cookies."""
    for where, route in _routes(index, listener):
        match = route.match
        path = match.path
        if path.exact is not None or path.regex is not None or path.normalized_prefix != "/":
            shown = path.exact or path.regex or path.normalized_prefix
            yield Need("URL routing", f"{where}.match.path", f"path {shown}")
        if match.method is not None:
            yield Need("method routing", f"{where}.match.method", match.method)
        for kind, items in (("header", match.headers), ("cookie", match.cookies)):
            for item in items:
                yield Need(f"{kind} routing", f"{where}.match.{kind}s", f"{kind} {item.name}")
        for item in match.query:
            yield Need("query routing", f"{where}.match.query", f"query {item.name}")


def affinity(config: Config, index: int, listener: Listener) -> Iterator[Need]:
    """Session affinity on a header or a cookie (an L4 proxy can only hash the address)."""
    used = {b.cluster for _, route in _routes(index, listener) for b in route.backends or ()}
    for ci, cluster in enumerate(config.clusters):
        hash_on = cluster.hash_on
        if cluster.name in used and hash_on is not None and hash_on.needs_l7:
            key = f"cookie {hash_on.cookie.name}" if hash_on.cookie else f"header {hash_on.header}"
            yield Need("cookie/header affinity", f"clusters[{ci}].hash_on", key)


def tls_termination(config: Config, index: int, listener: Listener) -> Iterator[Need]:
    if listener.protocol == "https":
        yield Need(
            "TLS termination",
            f"listeners[{index}].certificates",
            f"{len(listener.certificates)} certificate(s) served by SNI",
        )


def modification(config: Config, index: int, listener: Listener) -> Iterator[Need]:
    """Requests or responses changed on the way, answers the proxy gives itself."""
    if listener.request_id:
        yield Need("request modification", f"listeners[{index}].request_id", "x-request-id")
    for where, route in _routes(index, listener):
        for side in ("request_headers", "response_headers"):
            mutation = getattr(route, side)
            changed = [*mutation.remove, *mutation.set, *mutation.add]
            if changed:
                yield Need("request modification", f"{where}.{side}", ", ".join(changed))
        if route.prefix_rewrite is not None:
            yield Need("request modification", f"{where}.prefix_rewrite", route.prefix_rewrite)
        if route.redirect is not None:
            yield Need("answers from the proxy", f"{where}.redirect", "redirect")
        if route.direct_response is not None:
            yield Need("answers from the proxy", f"{where}.direct_response", "direct response")
    if listener.is_l7 and listener.forwarded_for:
        yield Need(
            "client address for backends",
            f"listeners[{index}].forwarded_for",
            "X-Forwarded-For",
            hard=False,
            substitute="send_proxy_protocol on the cluster, if the backends read PROXY v2",
        )


def per_request_balancing(config: Config, index: int, listener: Listener) -> Iterator[Need]:
    """Weighted splits, retries and timeouts per request; gRPC balanced per call."""
    clusters = {c.name: (i, c) for i, c in enumerate(config.clusters)}
    seen: set[str] = set()
    for where, route in _routes(index, listener):
        backends = route.backends or []
        if len(backends) > 1:
            split = "/".join(str(b.weight) for b in backends)
            yield Need("per-request canary split", f"{where}.backends", split)
        if route.retries is not None:
            yield Need("retries", f"{where}.retries", ", ".join(route.retries.retry_on))
        if backends and route.timeout != DEFAULT_TIMEOUT_MS:
            yield Need("per-route timeout", f"{where}.timeout", f"{route.timeout} ms")
        if route.websocket:
            yield Need(
                "WebSocket upgrade",
                f"{where}.websocket",
                "routed by path",
                hard=False,
                substitute="an L4 listener carries upgraded connections as bytes",
            )
        for backend in backends:
            ci, cluster = clusters[backend.cluster]
            if cluster.protocol == "http2" and cluster.name not in seen:
                seen.add(cluster.name)
                yield Need(
                    "gRPC / HTTP/2 stream balancing",
                    f"clusters[{ci}].protocol",
                    f"{cluster.name}: each call balanced on its own",
                )


def rate_limits(config: Config, index: int, listener: Listener) -> Iterator[Need]:
    """Request rate limits: an L4 proxy counts connections, never requests."""
    seen: set[str] = set()
    for vi, vhost in enumerate(listener.virtual_hosts):
        for ri, route in enumerate(vhost.routes):
            limit = vhost.rate_limit_of(route)
            where = f"listeners[{index}].virtual_hosts[{vi}]"
            where += f".routes[{ri}].rate_limit" if route.rate_limit else ".rate_limit"
            if limit is None or where in seen:
                continue
            seen.add(where)
            key = limit.header.header if limit.header is not None else limit.key
            yield Need(
                "request rate limits",
                where,
                f"{limit.requests} per {format_duration(limit.per)}, key {key}",
            )


def _l7_rule_fields(firewall: Firewall) -> list[str]:
    sizes = [f"max_sizes.{k}" for k, v in firewall.max_sizes.model_dump().items() if v is not None]
    named = ("methods", "user_agents", "file_extensions", "protocol", "rules")
    return [name for name in named if getattr(firewall, name)] + sizes


def firewall_rules(config: Config, index: int, listener: Listener) -> Iterator[Need]:
    """L7 firewall rules and CRS inspection read the request (address rules do not)."""
    firewalls = [(f"listeners[{index}].firewall", listener.firewall)] + [
        (f"{where}.firewall", route.firewall) for where, route in _routes(index, listener)
    ]
    for where, firewall in firewalls:
        if firewall is None or not firewall.enabled:
            continue
        if firewall.has_l7_rules:
            yield Need("L7 firewall rules", where, ", ".join(_l7_rule_fields(firewall)))
        if firewall.crs is not None:
            crs = firewall.crs
            yield Need(
                "CRS inspection",
                f"{where}.crs",
                f"paranoia level {crs.paranoia_level} at the verdict service {crs.service}",
            )


DETECTORS: tuple[Detector, ...] = (
    host_routing,
    request_routing,
    affinity,
    tls_termination,
    modification,
    per_request_balancing,
    rate_limits,
    firewall_rules,
)
"""Every detector of what needs L7."""


def address_rules(config: Config, index: int, listener: Listener) -> Iterator[AtL4]:
    """Address rules refuse connections before a byte is read, at either layer."""
    rules = listener.addresses
    if rules is not None:
        lists = (("allow", rules.allow), ("deny", rules.deny))
        detail = ", ".join(f"{name} {len(cidrs)} range(s)" for name, cidrs in lists if cidrs)
        yield AtL4("address rules", f"listeners[{index}].addresses", detail)


AT_L4: tuple[Callable[[Config, int, Listener], Iterator[AtL4]], ...] = (address_rules,)
"""Every detector of a feature an L4 proxy enforces as well."""


# -- traps -------------------------------------------------------------------------------------


def _tcp_listener_traps(config: Config, index: int, listener: Listener) -> Iterator[Trap]:
    """A gRPC service behind L4: every stream of a client's connection reaches one backend."""
    http2 = {e.address for c in config.clusters if c.protocol == "http2" for e in c.endpoints}
    for name in _l4_clusters(listener):
        cluster = config.cluster(name)
        hints = [e.address for e in cluster.endpoints if e.address in http2]
        ports = [e.address for e in cluster.endpoints if split_address(e.address).port == 50051]
        named = "grpc" in cluster.name or "grpc" in listener.name
        if hints or ports or named:
            yield Trap(
                "grpc-behind-l4",
                f"listeners[{index}]",
                f"cluster {name} looks like gRPC ("
                + ("its endpoints are an http2 cluster's" if hints else "")
                + ("port 50051" if ports and not hints else "")
                + ("its name" if named and not hints and not ports else "")
                + "): behind a tcp listener every call of a client's HTTP/2 connection goes to "
                "the one backend the connection reached; use an http listener and an http2 "
                "cluster to balance each call",
            )


def _l4_clusters(listener: Listener) -> list[str]:
    names = [r.cluster for r in listener.sni_routes]
    if listener.default_cluster:
        names.append(listener.default_cluster)
    return list(dict.fromkeys(names))


def _listener_clusters(listener: Listener) -> set[str]:
    names = set(_l4_clusters(listener))
    for vhost in listener.virtual_hosts:
        for route in vhost.routes:
            names.update(b.cluster for b in route.backends or ())
    return names


def _source_ip_traps(config: Config, index: int, listener: Listener) -> Iterator[Trap]:
    used = _listener_clusters(listener)
    for ci, cluster in enumerate(config.clusters):
        if cluster.name in used and cluster.hash_on is not None and cluster.hash_on.source_ip:
            better = (
                "; this listener is L7: hash on a cookie (hash_on.cookie) instead"
                if listener.is_l7
                else ""
            )
            yield Trap(
                "source-ip-affinity-behind-nat",
                f"clusters[{ci}].hash_on",
                f"listener {listener.name} keeps clients on an endpoint by their address: "
                "clients behind one NAT (an office, a mobile carrier) share it and all land on "
                f"one endpoint{better}",
            )


def _front_tiers(config: Config, listener: Listener) -> list[tuple[Listener, str]]:
    """The L4 listeners (and their clusters) whose endpoints reach `listener`'s port."""
    port = split_address(listener.address).port
    found = []
    for other in config.listeners:
        if other.is_l7 or other is listener:
            continue
        for name in _l4_clusters(other):
            endpoints = config.cluster(name).endpoints
            if any(split_address(e.address).port == port for e in endpoints):
                found.append((other, name))
    return found


def _tier_traps(config: Config, index: int, listener: Listener) -> Iterator[Trap]:
    for front, cluster_name in _front_tiers(config, listener):
        sends = config.cluster(cluster_name).send_proxy_protocol
        accepts = listener.accept_proxy_protocol
        if sends and accepts:
            continue
        where = f"listeners[{index}].accept_proxy_protocol"
        if sends != accepts:
            yield Trap(
                "proxy-protocol-mismatch",
                where,
                f"cluster {cluster_name} of L4 listener {front.name} "
                + ("sends" if sends else "does not send")
                + f" a PROXY header and listener {listener.name} "
                + ("expects" if accepts else "does not expect")
                + " one: every connection between the tiers fails; set both or neither",
            )
        else:
            yield Trap(
                "client-address-lost-between-tiers",
                where,
                f"L4 listener {front.name} reaches {listener.name} through cluster "
                f"{cluster_name} without the PROXY protocol: the backends (and X-Forwarded-For) "
                "see the L4 proxies' address, not the client's; set send_proxy_protocol on the "
                "cluster and accept_proxy_protocol on this listener",
            )


def passthrough_traps(data: Any) -> list[Trap]:
    """L7 features asked of an L4 listener, in a config as written (the model refuses them:
    this says why and what to do instead)."""
    traps: list[Trap] = []
    listeners = data.get("listeners") if isinstance(data, dict) else None
    for index, listener in enumerate(listeners if isinstance(listeners, list) else []):
        if not isinstance(listener, dict) or listener.get("protocol") not in ("tcp", "tls"):
            continue
        asked = [k for k in ("virtual_hosts", "certificates", "request_id") if listener.get(k)]
        if not asked:
            continue
        protocol = listener["protocol"]
        instead = (
            "TLS passthrough keeps HTTP encrypted end to end, so the proxy sees only the SNI: "
            "terminate TLS (protocol https with certificates) to route by host, path or "
            "header, or route by SNI (sni_routes) and keep passthrough"
            if protocol == "tls"
            else "a tcp listener sees only addresses and ports: use protocol http (or https)"
        )
        traps.append(
            Trap(
                "l7-asked-of-l4",
                format_path(("listeners", index)),
                f"a {protocol} listener is asked for {', '.join(asked)}; {instead}",
            )
        )
    return traps


# -- the advice --------------------------------------------------------------------------------


def _listener_advice(config: Config, index: int, listener: Listener) -> ListenerAdvice:
    traps = [
        *(_tcp_listener_traps(config, index, listener) if not listener.is_l7 else ()),
        *_source_ip_traps(config, index, listener),
        *(_tier_traps(config, index, listener) if listener.is_l7 else ()),
    ]
    at_l4 = [found for detector in AT_L4 for found in detector(config, index, listener)]
    if not listener.is_l7:
        sees = "addresses and ports" + (" and the SNI" if listener.protocol == "tls" else "")
        return ListenerAdvice(
            listener.name,
            listener.protocol,
            "L4",
            could_run_at_l4=True,
            suggestion=f"L4 fits: it sees {sees} and nothing in it asks for more",
            traps=traps,
            at_l4=at_l4,
        )
    needs = [need for detector in DETECTORS for need in detector(config, index, listener)]
    hard = [n for n in needs if n.hard]
    if hard:
        features = ", ".join(dict.fromkeys(n.feature for n in hard))
        suggestion = f"L7 is needed for: {features}"
        return ListenerAdvice(
            listener.name, listener.protocol, "L7", needs, False, suggestion, traps, at_l4
        )
    routes = [r for v in listener.virtual_hosts for r in v.routes]
    cluster = routes[0].backends[0].cluster if routes and routes[0].backends else None
    changes = "; ".join(f"{n.detail}: {n.substitute}" for n in needs)
    suggestion = (
        f"could run at L4: protocol tcp with default_cluster {cluster} (a tcp cluster over the "
        "same endpoints)" + (f"; instead of {changes}" if changes else "")
    )
    return ListenerAdvice(
        listener.name, listener.protocol, "L7", needs, True, suggestion, traps, at_l4
    )


def _group_of(config: Config, name: str) -> str | None:
    if not config.node_groups:
        return None
    return next((g.name for g in config.node_groups if name in g.listeners), None)


def _two_tier(config: Config, advice: list[ListenerAdvice]) -> TwoTier:
    l7 = [x for x in config.listeners if x.is_l7]
    tiers = [(front, x) for x in l7 for front, _ in _front_tiers(config, x)]
    if tiers:
        groups: dict[str, list[str]] = {}
        for front, back in tiers:
            for listener in (front, back):
                group = _group_of(config, listener.name) or DEFAULT_GROUP
                groups.setdefault(group, [])
                if listener.name not in groups[group]:
                    groups[group].append(listener.name)
        pairs = ", ".join(f"{f.name} → {b.name}" for f, b in tiers)
        return TwoTier(True, True, f"in place: L4 {pairs}", groups)
    needing = [a.listener for a in advice if a.layer == "L7" and not a.could_run_at_l4]
    if not needing:
        return TwoTier(False, False, "no listener needs L7: one L4 tier is enough")
    edges = [f"{name}-edge" for name in needing]
    passes_tls = any(x.protocol == "https" for x in l7 if x.name in needing)
    reason = (
        "fits: an L4 tier (protocol tcp on the public addresses, a tcp cluster of the L7 "
        "proxies with send_proxy_protocol and a tcp health check) in front of the L7 group "
        "(the same listeners on internal ports with accept_proxy_protocol): the L4 tier gives "
        "stable addresses and spreads connections, the L7 tier scales out behind it"
        + ("; TLS passes through the L4 tier and is terminated by the L7 one" if passes_tls else "")
    )
    return TwoTier(True, False, reason, {"l4": edges, "l7": needing})


def advise(config: Config) -> Advice:
    """The advice for every listener of `config`, and the two-tier question."""
    listeners = [_listener_advice(config, i, x) for i, x in enumerate(config.listeners)]
    return Advice(listeners, _two_tier(config, listeners))
