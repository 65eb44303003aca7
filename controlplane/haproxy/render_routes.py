"""Route tables of one HTTP listener: which route takes a request, decided with map lookups.

Terms: a request's *key* is its virtual host's name followed by its path (`site/api/x`), or
its path alone where the listener's one virtual host takes every request (`/api/x`).
A *decision point* is where a path can land: an exact path of a host (`site/healthz`, found
with `map_str`) or a prefix of a host (`site/api/`, found with `map_beg`, which HAProxy keeps
in a prefix tree and answers with the longest key; the request key gets a `/` appended, so
`site/api/` takes `/api` and `/api/x` but not `/apix`).

Each decision point has a *chain*: the routes that can take a request landing there, in
`ordered_routes` order, cut after the first route without conditions. For an exact path the
chain holds the exact routes of that path, the regex routes matching it and the prefix routes
above it; for a prefix, that prefix's routes and those of every shorter prefix above it. So
`/api` with a header condition falls back to `/` when the header is missing, as the model says.

The point's map value carries the chain's route without conditions, if any:
`D7|rank|route|backend` (`D7` alone otherwise), the backend being the route's first one (empty
for a route that answers itself). A request landing on a point whose chain starts with a route
without conditions (rank 0, the common case) is thus decided by one lookup in a large map.

Choosing in a chain without walking it: every route's conditions are a set of *facts*
(`render_conditions`). Routes whose conditions read the same facts (say, method only) share
one map, keyed by decision point and the facts' required texts (`D7|POST`), giving the route's
rank in the chain, id and first backend. Per request on a point with conditional routes, each
such group costs one key (`set-var-fmt`) and one lookup; the lowest rank wins. The rules per
request thus grow with the number of distinct condition shapes and regex conditions in the
listener, never with the number of routes, and are skipped on points of rank 0.

Regex *paths* cannot be looked up: when no exact path matched, regex routes are walked as
ACL rules in order (as Envoy walks them), before the prefix lookup; the first one matching
sets the same value a point of rank 0 would.

A route's action is keyed by its id (`site/api`, or `site/_3` for the fourth, unnamed,
route of `site`): further weighted backends (weighted choice with `rand`) and WebSocket
permission come from maps. Between the decision and the choice of backend, and after it for
responses, the features (`controlplane.haproxy.features`: redirects and direct responses,
prefix rewrite, header mutations) add their rules, their per-route values in maps too.

This module builds that structure (`HttpRouting`); `templates/frontend_http.j2` writes it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

from ..model import Listener, Route, ordered_routes
from .render_backends import BackendSet
from .render_conditions import Condition, RegexFact, RegexFacts, acl_terms, condition
from .render_text import Raw
from .scopes import ListenerScope, RouteEntry

NO_RANK = 1_000_000_000


@dataclass(frozen=True)
class Hosts:
    """How the virtual host is found: the exact-name map, the `*.suffix` map (longest first),
    the catch-all virtual host; each None when the listener has none."""

    exact_map: str | None
    wildcard_map: str | None
    catch_all: str | None

    @property
    def fixed(self) -> bool:
        """Every request goes to the catch-all virtual host (the listener has no other): the
        request key is its path alone, with no virtual host to find per request."""
        return self.exact_map is None and self.wildcard_map is None and self.catch_all is not None


@dataclass(frozen=True)
class RegexRoute:
    """A route with a regex path, walked as one rule: it sets `carried` as a point of rank 0
    would, where its virtual host, regex and `terms` (its other conditions) hold."""

    entry: RouteEntry
    regex: str
    carried: str
    terms: list[Raw]


@dataclass(frozen=True)
class Shape:
    """Routes whose conditions read the same facts: looked up as `format` (the decision point
    and the facts) in map `map`; `labels` says what the facts are."""

    number: int
    format: str
    map: str
    labels: str


@dataclass(frozen=True)
class Step:
    """The `k`-th further backend of weighted routes: chosen when the draw reaches the route's
    threshold in `thresholds`, named in `backends`."""

    k: int
    thresholds: str
    backends: str


@dataclass
class HttpRouting:
    """Which route takes a request and which backend it goes to, in one HTTP listener."""

    hosts: Hosts
    exact_map: str | None = None
    regex_routes: list[RegexRoute] = field(default_factory=list)
    prefix_map: str | None = None
    no_rank: int = NO_RANK
    regex_facts: list[RegexFact] = field(default_factory=list)
    shapes: list[Shape] = field(default_factory=list)
    websocket_map: str | None = None
    forwarding: bool = False
    weights_map: str | None = None
    steps: list[Step] = field(default_factory=list)


def key_host(listener: Listener, vhost: str) -> str:
    """What a request key of `vhost` starts with: its name, or nothing where the listener's
    one virtual host takes every request (`Hosts.fixed`: every domain is `*`)."""
    domains = [d for v in listener.virtual_hosts for d in v.domains]
    return "" if domains and all(d == "*" for d in domains) else vhost


def _element_prefix_of(prefix: str, path: str) -> bool:
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


def _route_matches_path(route: Route, path: str) -> bool:
    spec = route.match.path
    if spec.exact is not None:
        return spec.exact == path
    if spec.regex is not None:
        return re.fullmatch(spec.regex, path, re.ASCII) is not None
    return _element_prefix_of(spec.normalized_prefix or "/", path)


def _above(prefix_groups: dict[str, list[RouteEntry]], path: str) -> list[RouteEntry]:
    """Prefix routes taking `path`, longest prefix first (their precedence order)."""
    chain: list[RouteEntry] = []
    candidate = path
    while True:
        chain.extend(prefix_groups.get(candidate, ()))
        if candidate == "/":
            return chain
        candidate = candidate.rsplit("/", 1)[0] or "/"


class _Builder:
    def __init__(self, scope: ListenerScope, backends: BackendSet) -> None:
        self.scope = scope
        self.maps = scope.maps
        self.backends = backends
        self.regexes = RegexFacts()
        self.conditions: dict[str, Condition | None] = {
            entry.id: condition(entry.route.match, self.regexes) for entry in scope.routes
        }

    def hosts(self) -> Hosts:
        exact: list[tuple[str, str]] = []
        wildcards: list[tuple[str, str]] = []
        catch_all: str | None = None
        for vhost in self.scope.listener.virtual_hosts:
            for domain in vhost.domains:
                if domain == "*":
                    catch_all = vhost.name
                elif domain.startswith("*."):
                    wildcards.append((domain[1:], vhost.name))
                else:
                    exact.append((domain, vhost.name))
        for domain, vhost_name in exact:
            self.maps.add("hosts", domain, vhost_name)
        for suffix, vhost_name in sorted(wildcards, key=lambda w: (-len(w[0]), w[0])):
            self.maps.add("wildcards", suffix, vhost_name)
        return Hosts(
            self.maps.name("hosts") if exact else None,
            self.maps.name("wildcards") if wildcards else None,
            catch_all,
        )

    def carried(self, entry: RouteEntry) -> str:
        """`route|backend`: what a decision sets, the backend empty for a route that answers
        itself (its rule ends the request before a backend is used)."""
        backends = entry.route.backends
        first = self.backends.backend_for(backends[0].cluster, entry.route) if backends else ""
        return f"{entry.id}|{first}"

    def ordered(self) -> list[tuple[str, list[RouteEntry]]]:
        """Each virtual host's name and routes, in precedence order."""
        by_route = {id(e.route): e for e in self.scope.routes}
        return [
            (vhost.name, [by_route[id(r)] for r in ordered_routes(vhost.routes)])
            for vhost in self.scope.listener.virtual_hosts
        ]

    def decisions(self, routing: HttpRouting) -> None:
        decision_number = 0
        shapes: dict[tuple[str, ...], dict[str, str]] = {}
        for vhost_name, ordered in self.ordered():
            vhost = key_host(self.scope.listener, vhost_name)
            exact_groups: dict[str, list[RouteEntry]] = defaultdict(list)
            prefix_groups: dict[str, list[RouteEntry]] = defaultdict(list)
            regex_routes: list[RouteEntry] = []
            for entry in ordered:
                spec = entry.route.match.path
                if spec.exact is not None:
                    exact_groups[spec.exact].append(entry)
                elif spec.regex is not None:
                    regex_routes.append(entry)
                else:
                    prefix_groups[spec.normalized_prefix or "/"].append(entry)

            points: list[tuple[str, str, list[RouteEntry]]] = []
            for path in sorted(exact_groups):
                regexes = [e for e in regex_routes if _route_matches_path(e.route, path)]
                chain = exact_groups[path] + regexes + _above(prefix_groups, path)
                points.append(("exact", vhost + path, chain))
            for prefix in sorted(prefix_groups):
                key = vhost + ("/" if prefix == "/" else prefix + "/")
                points.append(("prefix", key, _above(prefix_groups, prefix)))
            for kind, key, chain in points:
                decision_number += 1
                point = f"D{decision_number}"
                value = point
                for rank, entry in enumerate(chain):
                    cond = self.conditions[entry.id]
                    if cond is None:
                        continue
                    if not cond:
                        value = f"{point}|{rank}|{self.carried(entry)}"
                        break
                    shape = tuple(fact for fact, _ in cond)
                    lookup = "|".join([point, *(text for _, text in cond)])
                    shapes.setdefault(shape, {}).setdefault(lookup, f"{rank}|{self.carried(entry)}")
                self.maps.add(kind, key, value)
        routing.exact_map = self.maps.name("exact") if "exact" in self.maps else None
        for _, ordered in self.ordered():
            for entry in ordered:
                spec = entry.route.match.path
                if spec.regex is None or self.conditions[entry.id] is None:
                    continue
                terms = acl_terms(entry.route.match)
                routing.regex_routes.append(
                    RegexRoute(entry, spec.regex, self.carried(entry), terms)
                )
        routing.prefix_map = self.maps.name("prefix") if "prefix" in self.maps else None
        if not shapes:
            return
        routing.regex_facts = self.regexes.rules
        for number, (shape, entries) in enumerate(sorted(shapes.items()), start=1):
            purpose = f"match{number}"
            for key, value in entries.items():
                self.maps.add(purpose, key, value)
            labels = ", ".join(self.regexes.labels[fact] for fact in shape)
            fmt = "|".join(["%[var(txn.d)]", *shape])
            routing.shapes.append(Shape(number, fmt, self.maps.name(purpose), labels))

    def upgrades(self, routing: HttpRouting) -> None:
        for entry in self.scope.forwarding:
            if entry.route.websocket:
                self.maps.add("websocket", entry.id, "1")
        if "websocket" in self.maps:
            routing.websocket_map = self.maps.name("websocket")

    def backend_choice(self, routing: HttpRouting) -> None:
        forwarding = self.scope.forwarding
        if not forwarding:
            return
        routing.forwarding = True
        most = max(len(e.route.backends or ()) for e in forwarding)
        for entry in forwarding:
            backends = entry.route.backends or []
            names = [self.backends.backend_for(b.cluster, entry.route) for b in backends]
            if len(backends) > 1:
                self.maps.add("weights", entry.id, str(sum(b.weight for b in backends)))
                threshold = 0
                for k, (backend, name) in enumerate(zip(backends, names, strict=True)):
                    if k:
                        self.maps.add(f"backend{k}", entry.id, name)
                        self.maps.add(f"threshold{k}", entry.id, str(threshold))
                    threshold += backend.weight
        if most > 1:
            routing.weights_map = self.maps.name("weights")
            routing.steps = [
                Step(k, self.maps.name(f"threshold{k}"), self.maps.name(f"backend{k}"))
                for k in range(1, most)
            ]


def http_routing(scope: ListenerScope, backends: BackendSet) -> HttpRouting:
    """How HTTP listener `scope` routes: virtual hosts, decisions, upgrades, backend choice
    (their map entries added to `scope.maps`, their backends registered in `backends`)."""
    builder = _Builder(scope, backends)
    routing = HttpRouting(builder.hosts())
    builder.decisions(routing)
    builder.upgrades(routing)
    builder.backend_choice(routing)
    return routing
