"""Route tables of one HTTP listener: which route takes a request, decided with map lookups.

Terms: a request's *key* is its virtual host's name followed by its path (`site/api/x`).
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
route of `site`): further weighted backends (weighted choice with `rand`), prefix rewrite,
header mutations and WebSocket permission come from maps; redirects and direct responses are
one rule each.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..model import Listener, Route, VirtualHost, ordered_routes
from .render_backends import BackendSet
from .render_conditions import Condition, RegexFacts, acl_terms, condition
from .render_text import dq, lf_literal, map_entry, regex_word, word

NO_RANK = 1_000_000_000
_ON_CONDITIONAL_POINT = "{ var(txn.d) -m found }"
_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


@dataclass(frozen=True)
class RouteEntry:
    """A model route with the names the rendered configuration gives it."""

    id: str
    where: str
    vhost: VirtualHost
    route: Route

    @property
    def label(self) -> str:
        """`route api (listeners[0].virtual_hosts[0].routes[0])`, for comments."""
        return f"route {self.route.name or self.id} ({self.where})"


@dataclass
class RouteTables:
    """What one HTTP listener's frontend needs: rule lines in order, and their map files."""

    lines: list[str] = field(default_factory=list)
    maps: dict[str, str] = field(default_factory=dict)


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
    def __init__(self, listener: Listener, index: int, backends: BackendSet) -> None:
        self.listener = listener
        self.name = listener.name
        self.index = index
        self.backends = backends
        self.regexes = RegexFacts(prefix="", guard=_ON_CONDITIONAL_POINT)
        self.entries: list[RouteEntry] = []
        self.maps: dict[str, list[str]] = defaultdict(list)
        self.lines: list[str] = []
        self.conditions: dict[str, Condition | None] = {}

    def map_name(self, purpose: str) -> str:
        return f"{self.name}.{purpose}.map"

    def add(self, purpose: str, key: str, value: str) -> None:
        self.maps[self.map_name(purpose)].append(map_entry(key, value))

    # -- hosts -----------------------------------------------------------------------------

    def hosts(self) -> None:
        exact: list[tuple[str, str]] = []
        wildcards: list[tuple[str, str]] = []
        catch_all: str | None = None
        for vhost in self.listener.virtual_hosts:
            for domain in vhost.domains:
                if domain == "*":
                    catch_all = vhost.name
                elif domain.startswith("*."):
                    wildcards.append((domain[1:], vhost.name))
                else:
                    exact.append((domain, vhost.name))
        self.lines.append("# virtual host: exact name, then the longest *.suffix, then '*'")
        self.lines.append("http-request set-var(txn.host) req.fhdr(host),lower,regsub(:[0-9]+$,)")
        if exact:
            for domain, vhost_name in exact:
                self.add("hosts", domain, vhost_name)
            self.lines.append(
                f"http-request set-var(txn.vh) var(txn.host),map_str({self.map_name('hosts')})"
            )
        if wildcards:
            for suffix, vhost_name in sorted(wildcards, key=lambda w: (-len(w[0]), w[0])):
                self.add("wildcards", suffix, vhost_name)
            self.lines.append(
                "http-request set-var(txn.vh) "
                f"var(txn.host),map_end({self.map_name('wildcards')}) "
                "if !{ var(txn.vh) -m found }"
            )
        if catch_all is not None:
            self.lines.append(
                f"http-request set-var(txn.vh) {word(f'str({catch_all})')} "
                "if !{ var(txn.vh) -m found }"
            )

    # -- decision ------------------------------------------------------------------------

    def collect(self) -> None:
        for vi, vhost in enumerate(self.listener.virtual_hosts):
            for ri, route in enumerate(vhost.routes):
                route_id = f"{vhost.name}/{route.name or f'_{ri}'}"
                where = f"listeners[{self.index}].virtual_hosts[{vi}].routes[{ri}]"
                entry = RouteEntry(route_id, where, vhost, route)
                self.entries.append(entry)
                self.conditions[route_id] = condition(route.match, self.regexes)

    def decisions(self) -> None:
        by_route = {id(e.route): e for e in self.entries}
        decision_number = 0
        shapes: dict[tuple[str, ...], dict[str, str]] = {}
        for vhost in self.listener.virtual_hosts:
            ordered = [by_route[id(r)] for r in ordered_routes(vhost.routes)]
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
                points.append(("exact", vhost.name + path, chain))
            for prefix in sorted(prefix_groups):
                key = vhost.name + ("/" if prefix == "/" else prefix + "/")
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
                self.add(kind, key, value)
        self._decision_rules(shapes)

    def carried(self, entry: RouteEntry) -> str:
        """`route|backend`: what a decision sets, the backend empty for a route that answers
        itself (its rule ends the request before a backend is used)."""
        backends = entry.route.backends
        first = self.backends.backend_for(backends[0].cluster, entry.route) if backends else ""
        return f"{entry.id}|{first}"

    def _decision_rules(self, shapes: dict[tuple[str, ...], dict[str, str]]) -> None:
        lines = self.lines
        lines.append("# route: exact path, then regex paths in order, then the longest prefix")
        lines.append('http-request set-var-fmt(txn.key) "%[var(txn.vh)]%[path]"')
        if self.map_name("exact") in self.maps:
            lines.append(
                f"http-request set-var(txn.pt) var(txn.key),map_str({self.map_name('exact')})"
            )
        for entry in self._regex_routes():
            spec = entry.route.match.path
            assert spec.regex is not None
            if self.conditions[entry.id] is None:
                continue
            terms = [
                "!{ var(txn.pt) -m found }",
                f"{{ var(txn.vh) -m str {word(entry.vhost.name)} }}",
                f"{{ path -m reg {regex_word(spec.regex)} }}",
                *acl_terms(entry.route.match),
            ]
            lines.append(f"# {entry.label}")
            lines.append(
                f"http-request set-var(txn.pt) {word(f'str(-|0|{self.carried(entry)})')} "
                f"if {' '.join(terms)}"
            )
        if self.map_name("prefix") in self.maps:
            lines.append(
                "http-request set-var(txn.pt) "
                f"var(txn.key),concat(/),map_beg({self.map_name('prefix')}) "
                "if !{ var(txn.pt) -m found }"
            )
        lines.append("# the point's route without conditions: D|rank|route|backend")
        lines.append("http-request set-var(txn.route) var(txn.pt),field(3,|)")
        lines.append("http-request set-var(txn.be) var(txn.pt),field(4,|)")
        if not shapes:
            return
        lines.append("# routes with conditions, looked up where one may come before rank")
        lines.append(f"http-request set-var(txn.rank) int({NO_RANK})")
        lines.append("http-request set-var(txn.rank) var(txn.pt),field(2,|)")
        lines.append(
            "http-request set-var(txn.d) var(txn.pt),field(1,|) "
            "unless { var(txn.rank) -m int eq 0 }"
        )
        if self.regexes.rules:
            lines.append("# regex conditions, one fact each")
            lines.extend(self.regexes.rules)
        for number, (shape, entries) in enumerate(sorted(shapes.items()), start=1):
            purpose = f"match{number}"
            for key, value in entries.items():
                self.add(purpose, key, value)
            fmt = "|".join(["%[var(txn.d)]", *shape])
            beats = f"{{ var(txn.c{number}r),sub(txn.rank) lt 0 }}"
            labels = ", ".join(self.regexes.labels[fact] for fact in shape)
            lines.append(f"# routes with conditions on: {labels}")
            lines.append(
                f"http-request set-var-fmt(txn.k{number}) {dq(fmt)} if {_ON_CONDITIONAL_POINT}"
            )
            lines.append(
                f"http-request set-var(txn.c{number}) "
                f"var(txn.k{number}),map_str({self.map_name(purpose)})"
            )
            lines.append(f"http-request set-var(txn.c{number}r) var(txn.c{number}),field(1,|)")
            for var, index in (("route", 2), ("be", 3)):
                lines.append(
                    f"http-request set-var(txn.{var}) var(txn.c{number}),field({index},|) "
                    f"if {beats}"
                )
            lines.append(f"http-request set-var(txn.rank) var(txn.c{number}r) if {beats}")

    def _regex_routes(self) -> list[RouteEntry]:
        by_route = {id(e.route): e for e in self.entries}
        result = []
        for vhost in self.listener.virtual_hosts:
            for route in ordered_routes(vhost.routes):
                if route.match.path.regex is not None:
                    result.append(by_route[id(route)])
        return result

    # -- actions -------------------------------------------------------------------------

    def actions(self) -> None:
        lines = self.lines
        forwarding = [e for e in self.entries if e.route.backends is not None]
        websocket = [e for e in forwarding if e.route.websocket]
        lines.append("# upgrades: only WebSocket, only on routes that allow it (else 403)")
        upgrade = "{ req.hdr(upgrade) -m found } { req.hdr(connection) -i -m sub upgrade }"
        if websocket:
            for entry in websocket:
                self.add("websocket", entry.id, "1")
            allowed = f"{{ var(txn.route),map_str({self.map_name('websocket')}) -m found }}"
            lines.append(f"http-request return status 403 if {upgrade} !{allowed}")
            lines.append(
                f"http-request return status 403 if {upgrade} "
                "!{ req.hdr(upgrade) -i -m str websocket }"
            )
        else:
            lines.append(f"http-request return status 403 if {upgrade}")
        lines.append("http-request return status 404 if !{ var(txn.route) -m found }")
        for entry in self.entries:
            if entry.route.direct_response is not None:
                answer = entry.route.direct_response
                body = f" string {dq(answer.body)}" if answer.body else ""
                lines.append(f"# {entry.label}: direct response")
                taken = f"{{ var(txn.route) -m str {word(entry.id)} }}"
                lines.append(
                    f"http-request return status {answer.status} content-type "
                    f"{dq(answer.content_type)}{body} if {taken}"
                )
            elif entry.route.redirect is not None:
                lines.append(f"# {entry.label}: redirect")
                lines.append(
                    f"http-request redirect location {dq(self._location(entry.route))} "
                    f"code {entry.route.redirect.status} "
                    f"if {{ var(txn.route) -m str {word(entry.id)} }}"
                )
        if forwarding:
            self._rewrites(forwarding)
            self._header_mutations(forwarding, "request")
            self._backend_choice(forwarding)
        self._header_mutations(self.entries, "response")

    def _location(self, route: Route) -> str:
        redirect = route.redirect
        assert redirect is not None
        scheme = redirect.scheme or ("https" if self.listener.protocol == "https" else "http")
        port = f":{redirect.port}" if redirect.port is not None else ""
        if redirect.host is not None:
            host = lf_literal(redirect.host) + port
        elif port:
            host = "%[req.fhdr(host),regsub(:[0-9]+$,)]" + port
        else:
            host = f"%[req.fhdr(host),regsub({_DEFAULT_PORTS[scheme]}$,)]"
        if redirect.path is not None:
            path = lf_literal(redirect.path) + "%[url,regsub(^[^?]*,)]"
        else:
            path = "%[pathq]"
        return f"{scheme}://{host}{path}"

    def _rewrites(self, forwarding: Sequence[RouteEntry]) -> None:
        lengths: set[tuple[int, str]] = set()
        for entry in forwarding:
            rewrite = entry.route.prefix_rewrite
            if rewrite is None:
                continue
            prefix = entry.route.match.path.normalized_prefix or "/"
            target = rewrite.rstrip("/") or "/"
            if prefix == "/":
                if target == "/":
                    continue
                length, mode, text = 1, "k", target + "/"
            elif target == "/":
                length, mode, text = len(prefix), "s", ""
            else:
                length, mode, text = len(prefix), "k", target
            self.add("rewrite", entry.id, f"{length}|{mode}|{text}")
            lengths.add((length, mode))
        if not lengths:
            return
        self.lines.append("# prefix rewrite: replace the matched prefix, keep the query")
        self.lines.append(
            f"http-request set-var(txn.rw) var(txn.route),map_str({self.map_name('rewrite')})"
        )
        for length, mode in sorted(lengths):
            if mode == "k":
                new_path = f"%[var(txn.rw),field(3,|,0)]%[path,bytes({length})]"
            else:
                new_path = f"/%[path,bytes({length}),regsub(^/+,)]"
            self.lines.append(
                f"http-request set-path {dq(new_path)} if {{ var(txn.rw) -m beg {length}|{mode}| }}"
            )

    def _header_mutations(self, entries: Sequence[RouteEntry], side: str) -> None:
        keyword = "http-request" if side == "request" else "http-after-response"
        ops: dict[str, dict[str, list[tuple[str, str]]]] = {"del": {}, "set": {}, "add": {}}
        for entry in entries:
            mutation = (
                entry.route.request_headers if side == "request" else entry.route.response_headers
            )
            for name in mutation.remove:
                ops["del"].setdefault(name, []).append((entry.id, "1"))
            for name, value in mutation.set.items():
                ops["set"].setdefault(name, []).append((entry.id, value))
            for name, value in mutation.add.items():
                ops["add"].setdefault(name, []).append((entry.id, value))
        if not any(ops.values()):
            return
        self.lines.append(f"# {side} header mutations of routes: remove, set, add")
        short = "req" if side == "request" else "resp"
        for op in ("del", "set", "add"):
            if not ops[op]:
                continue
            purpose = f"{short}-{op}"
            for name, items in sorted(ops[op].items()):
                for route_id, value in items:
                    self.add(purpose, f"{route_id}|{name}", value)
                this = f"var(txn.route),concat(|{name}),map_str({self.map_name(purpose)})"
                found = f"{{ {word(this)} -m found }}"
                if op == "del":
                    self.lines.append(f"{keyword} del-header {word(name)} if {found}")
                else:
                    verb = "set-header" if op == "set" else "add-header"
                    self.lines.append(
                        f"{keyword} {verb} {word(name)} {dq(f'%[{this}]')} if {found}"
                    )

    def _backend_choice(self, forwarding: Sequence[RouteEntry]) -> None:
        most = max(len(e.route.backends or ()) for e in forwarding)
        for entry in forwarding:
            backends = entry.route.backends or []
            names = [self.backends.backend_for(b.cluster, entry.route) for b in backends]
            if len(backends) > 1:
                self.add("weights", entry.id, str(sum(b.weight for b in backends)))
                threshold = 0
                for k, (backend, name) in enumerate(zip(backends, names, strict=True)):
                    if k:
                        self.add(f"backend{k}", entry.id, name)
                        self.add(f"threshold{k}", entry.id, str(threshold))
                    threshold += backend.weight
        lines = self.lines
        if most > 1:
            lines.append("# backends: weighted choice, one random draw per request")
            lines.append(
                "http-request set-var(txn.wsum) "
                f"var(txn.route),map_str_int({self.map_name('weights')})"
            )
            lines.append(
                "http-request set-var(txn.pick) rand,mod(txn.wsum) if { var(txn.wsum) -m found }"
            )
            for k in range(1, most):
                lines.append(
                    f"http-request set-var(txn.t{k}) "
                    f"var(txn.route),map_str_int({self.map_name(f'threshold{k}')})"
                )
                lines.append(
                    f"http-request set-var(txn.be) "
                    f"var(txn.route),map_str({self.map_name(f'backend{k}')}) "
                    f"if {{ var(txn.t{k}) -m found }} {{ var(txn.pick),sub(txn.t{k}) ge 0 }}"
                )
        lines.append("use_backend %[var(txn.be)] if { var(txn.be) -m found }")

    def tables(self) -> RouteTables:
        maps = {
            name: "".join(f"{line}\n" for line in entries) for name, entries in self.maps.items()
        }
        return RouteTables(lines=self.lines, maps=dict(sorted(maps.items())))


def route_tables(listener: Listener, index: int, backends: BackendSet) -> RouteTables:
    """The routing rules and map files of HTTP listener `listener` (`listeners[index]`)."""
    builder = _Builder(listener, index, backends)
    builder.hosts()
    builder.collect()
    builder.decisions()
    builder.actions()
    return builder.tables()
