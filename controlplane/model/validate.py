"""Whole-config validation: what no single object can check on its own.

Every rule yields `Issue`s naming the field's path; `parse_config` runs the structural
(Pydantic) and whole-config checks and refuses a config with any issue.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from pydantic import ValidationError

from .cluster import Cluster
from .config import Config
from .errors import ConfigError, Issue, PathPart, issues_from_pydantic
from .kinds import DEFAULT_GROUP
from .listener import Certificate, Listener, SniRoute
from .parts import PARTS, reuse
from .route import Route
from .tls import certificate_problem
from .types import split_address

Rule = Callable[[Config], Iterator[Issue]]


def parse_config(data: Any, like: Config | None = None) -> Config:
    """A validated Config from plain data (parsed YAML or JSON), or ConfigError.

    With `like` (the config `data` is a change of), the parts of `data` that are the plain
    data of parts of `like` are taken as they are (`parts.reuse`): the same result, checked
    in the time the changed parts take; the whole-config rules run on the whole result."""
    if like is not None:
        data = reuse(data, like, PARTS)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(issues_from_pydantic(exc)) from None
    if like is not None:
        PARTS.follows(config, like)
    issues = validate_config(config)
    if issues:
        raise ConfigError(issues)
    return config


def validate_config(config: Config) -> list[Issue]:
    """Every whole-config problem of a structurally valid config."""
    return [issue for rule in RULES for issue in rule(config)]


def _duplicates(
    names: Sequence[str | None], path: tuple[PathPart, ...], what: str, field: str = "name"
) -> Iterator[Issue]:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name is None:
            continue
        if name in seen:
            yield Issue((*path, i, field), f"another {what} is already named {name!r}")
        seen.add(name)


def unique_names(config: Config) -> Iterator[Issue]:
    yield from _duplicates([x.name for x in config.listeners], ("listeners",), "listener")
    yield from _duplicates([x.name for x in config.clusters], ("clusters",), "cluster")
    yield from _duplicates([x.name for x in config.node_groups], ("node_groups",), "node group")
    for li, listener in enumerate(config.listeners):
        vhosts_path: tuple[PathPart, ...] = ("listeners", li, "virtual_hosts")
        yield from _duplicates(
            [v.name for v in listener.virtual_hosts], vhosts_path, "virtual host"
        )
        for vi, vhost in enumerate(listener.virtual_hosts):
            if max(PARTS.tally(_route_name, vhost, "routes").values(), default=0) <= 1:
                continue
            routes_path = (*vhosts_path, vi, "routes")
            yield from _duplicates([r.name for r in vhost.routes], routes_path, "route")


def _route_name(route: Route) -> tuple[str, ...]:
    return (route.name,) if route.name is not None else ()


def unique_domains(config: Config) -> Iterator[Issue]:
    for li, listener in enumerate(config.listeners):
        seen: dict[str, str] = {}
        for vi, vhost in enumerate(listener.virtual_hosts):
            for di, domain in enumerate(vhost.domains):
                if domain in seen:
                    yield Issue(
                        ("listeners", li, "virtual_hosts", vi, "domains", di),
                        f"{domain!r} is already served by virtual host {seen[domain]!r}",
                    )
                seen.setdefault(domain, vhost.name)


def unique_server_names(config: Config) -> Iterator[Issue]:
    for li, listener in enumerate(config.listeners):
        named: tuple[tuple[str, Sequence[Certificate | SniRoute]], ...] = (
            ("certificates", listener.certificates),
            ("sni_routes", listener.sni_routes),
        )
        for field, items in named:
            seen: set[str] = set()
            for ii, item in enumerate(items):
                for ni, name in enumerate(item.server_names):
                    if name in seen:
                        yield Issue(
                            ("listeners", li, field, ii, "server_names", ni),
                            f"server name {name!r} appears twice in this listener",
                        )
                    seen.add(name)


def _cluster_refs(listener: Listener) -> Iterator[tuple[tuple[PathPart, ...], str, Route | None]]:
    if listener.default_cluster:
        yield ("default_cluster",), listener.default_cluster, None
    for si, sni_route in enumerate(listener.sni_routes):
        yield ("sni_routes", si, "cluster"), sni_route.cluster, None
    for vi, vhost in enumerate(listener.virtual_hosts):
        for ri, route in enumerate(vhost.routes):
            for bi, backend in enumerate(route.backends or ()):
                path = ("virtual_hosts", vi, "routes", ri, "backends", bi, "cluster")
                yield path, backend.cluster, route
            for mi, mirror in enumerate(route.mirrors):
                path = ("virtual_hosts", vi, "routes", ri, "mirrors", mi, "cluster")
                yield path, mirror.cluster, route


def _referenced(listener: Listener) -> set[str]:
    """The clusters a listener's routes, SNI routes and default send to."""
    names = {n for v in listener.virtual_hosts for n in PARTS.tally(_sent_to, v, "routes")}
    names.update(s.cluster for s in listener.sni_routes)
    if listener.default_cluster:
        names.add(listener.default_cluster)
    return names


def _sent_to(route: Route) -> Iterator[str]:
    """The clusters a route sends to."""
    return (b.cluster for b in route.backends or ())


def references_resolve(config: Config) -> Iterator[Issue]:
    clusters = {c.name: c for c in config.clusters}
    for li, listener in enumerate(config.listeners):
        if _referenced(listener) <= clusters.keys():
            continue  # nothing to report: the walk below names what is missing
        for path, name, _ in _cluster_refs(listener):
            if name not in clusters:
                yield Issue(("listeners", li, *path), f"no cluster named {name!r}")
    listeners = {x.name for x in config.listeners}
    for gi, group in enumerate(config.node_groups):
        for i, name in enumerate(group.listeners):
            if name not in listeners:
                yield Issue(("node_groups", gi, "listeners", i), f"no listener named {name!r}")


def protocols_fit(config: Config) -> Iterator[Issue]:
    """L7 routes need HTTP clusters; L4 listeners need tcp clusters."""
    clusters = {c.name: c for c in config.clusters}
    tcp = {name for name, c in clusters.items() if c.protocol == "tcp"}
    for li, listener in enumerate(config.listeners):
        misfits = tcp if listener.is_l7 else clusters.keys() - tcp
        if misfits.isdisjoint(_referenced(listener)):
            continue
        for path, name, _ in _cluster_refs(listener):
            cluster = clusters.get(name)
            if cluster is None:
                continue
            if listener.is_l7 and cluster.protocol == "tcp":
                yield Issue(
                    ("listeners", li, *path),
                    f"cluster {name!r} speaks tcp; an {listener.protocol} route needs an "
                    "http1 or http2 cluster",
                )
            if not listener.is_l7 and cluster.protocol != "tcp":
                yield Issue(
                    ("listeners", li, *path),
                    f"cluster {name!r} speaks {cluster.protocol}; a {listener.protocol} "
                    "listener forwards bytes and needs a tcp cluster",
                )


def l4_hashing_sees_no_http(config: Config) -> Iterator[Issue]:
    for ci, cluster in enumerate(config.clusters):
        if cluster.protocol == "tcp" and cluster.hash_on and cluster.hash_on.needs_l7:
            yield Issue(
                ("clusters", ci, "hash_on"),
                "a tcp cluster cannot hash on a header or cookie (L4 sees no HTTP); use source_ip",
            )


def _split(route: Route) -> bool:
    """Whether the route sends to more than one backend."""
    return len(route.backends or ()) > 1


def route_backends_agree_on_hashing(config: Config) -> Iterator[Issue]:
    clusters = {c.name: c for c in config.clusters}
    for li, listener in enumerate(config.listeners):
        for vi, vhost in enumerate(listener.virtual_hosts):
            for ri in PARTS.positions(_split, vhost, "routes"):
                route = vhost.routes[ri]
                keys = {
                    clusters[b.cluster].hash_on
                    for b in route.backends or ()
                    if b.cluster in clusters
                }
                if len(keys) > 1:
                    yield Issue(
                        ("listeners", li, "virtual_hosts", vi, "routes", ri, "backends"),
                        "the clusters of one route must use the same hash_on (or none)",
                    )


def _mutates_per_backend(route: Route) -> bool:
    return route.mutates_per_backend


def route_backends_distinct(config: Config) -> Iterator[Issue]:
    """A route whose backends change headers of their own names each cluster once (the
    changes are the backend's, found by cluster)."""
    for li, listener in enumerate(config.listeners):
        for vi, vhost in enumerate(listener.virtual_hosts):
            for ri in PARTS.positions(_mutates_per_backend, vhost, "routes"):
                route = vhost.routes[ri]
                seen: set[str] = set()
                for bi, backend in enumerate(route.backends or ()):
                    if backend.cluster in seen:
                        yield Issue(
                            ("listeners", li, "virtual_hosts", vi, "routes", ri, "backends", bi),
                            f"cluster {backend.cluster!r} is already a backend of this route, "
                            "whose backends change headers of their own: list it once",
                        )
                    seen.add(backend.cluster)


def _overlaps(a: str, b: str) -> bool:
    first, second = split_address(a), split_address(b)
    ip_a, ip_b = first.ip, second.ip
    if first.port != second.port or ip_a is None or ip_b is None:
        return False
    return ip_a == ip_b or ip_a.is_unspecified or ip_b.is_unspecified


def addresses_distinct_per_group(config: Config) -> Iterator[Issue]:
    index = {x.name: i for i, x in enumerate(config.listeners)}
    groups = [(g.name, g.listeners) for g in config.node_groups] or [(DEFAULT_GROUP, list(index))]
    reported: set[int] = set()
    for group_name, names in groups:
        members = [index[n] for n in dict.fromkeys(names) if n in index]
        for pos, i in enumerate(members):
            for j in members[:pos]:
                a, b = config.listeners[i], config.listeners[j]
                if i not in reported and _overlaps(a.address, b.address):
                    reported.add(i)
                    yield Issue(
                        ("listeners", i, "address"),
                        f"{a.address} clashes with listener {b.name!r} ({b.address}) "
                        f"in node group {group_name!r}",
                    )


def certificates_load(config: Config) -> Iterator[Issue]:
    for li, listener in enumerate(config.listeners):
        for ci, cert in enumerate(listener.certificates):
            problem = certificate_problem(cert.cert, cert.key)
            if problem:
                yield Issue(("listeners", li, "certificates", ci), problem)


def _repeats_an_endpoint(cluster: Cluster) -> bool:
    return len({e.address for e in cluster.endpoints}) < len(cluster.endpoints)


def endpoints_distinct(config: Config) -> Iterator[Issue]:
    for ci in PARTS.positions(_repeats_an_endpoint, config, "clusters"):
        cluster = config.clusters[ci]
        seen: set[str] = set()
        for ei, endpoint in enumerate(cluster.endpoints):
            if endpoint.address in seen:
                yield Issue(
                    ("clusters", ci, "endpoints", ei, "address"),
                    f"{endpoint.address} is listed more than once; raise its weight instead",
                )
            seen.add(endpoint.address)


RULES: tuple[Rule, ...] = (
    unique_names,
    unique_domains,
    unique_server_names,
    references_resolve,
    protocols_fit,
    l4_hashing_sees_no_http,
    route_backends_agree_on_hashing,
    route_backends_distinct,
    addresses_distinct_per_group,
    certificates_load,
    endpoints_distinct,
)
