"""Which way a request goes, as the model defines it: `decide(config, request)`.

The decision follows the steps a proxy takes, each with the rule that settled it:
listener → (TLS: the certificate, or the SNI route of a passthrough listener) → virtual host
(exact domain, then the longest `*.suffix`, then `*`) → route (the first, in
`precedence_order`, whose every condition holds; every other route whose path matched is
listed with why it lost) → action (backends with their shares, a redirect's Location, a
direct response, 404, a refused upgrade, the firewall's 403) → the policies that apply
(`model.policies`). Address rules (`listener.addresses`) are checked first: a refused
client's connection closes before anything else is decided.

It is the model's meaning, not either proxy's: the scenario runner checks every request it
sends through a real Envoy and a real HAProxy against it. The names each compiler gives the
parts decided here come from the compilers (`controlplane.explain` assembles them).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationError

from .cluster import Cluster
from .config import Config
from .errors import ConfigError, Issue, issues_from_pydantic
from .firewall import BLOCKED_BODY, Firewall, effective_firewall
from .firewall_checks import address_refusal, matched_rules
from .listener import Listener
from .policies import AppliedPolicy, applied_policies
from .precedence import decided_by, precedence_order
from .route import Match, PathMatch, Route, RouteId, ValueMatch, VirtualHost, route_ids
from .types import HEADER_NAME_PATTERN, HOST_NAME_PATTERN, Model, Name

_TOKEN = HEADER_NAME_PATTERN


def _ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address") from None


def _host_name(text: str) -> str:
    if re.fullmatch(HOST_NAME_PATTERN, text, re.ASCII) is None:
        raise ValueError("an SNI is a host name: dot-separated labels of letters, digits and -")
    return text.lower()


def _visible(what: str, first: str = "", without: str = "") -> Any:
    """A string of visible ASCII (no blanks) starting with `first`, without `without`."""

    def check(text: str) -> str:
        bad = [c for c in text if not "!" <= c <= "~" or c in without]
        if bad or not text.startswith(first):
            starts = f"'{first}' then " if first else ""
            refused = f", no {' '.join(without)}" if without else ""
            raise ValueError(f"{what} is {starts}visible ASCII (no blanks{refused})")
        return text

    return AfterValidator(check)


class Request(Model):
    """A request (or connection) to explain: what a client would send to a listener.

    `path` may carry a query string (`/search?q=x`); `host` is the Host header (or gRPC
    `:authority`), port included as a client sends it; `headers` and `cookies` are sent once
    each (a `cookie` header's cookies join `cookies`); `sni` is the TLS server name of an
    https or tls listener's ClientHello; `client_ip` is the address the proxy sees (or a PROXY
    protocol header claims); `body` is what firewall rules on the body and its size read.
    """

    listener: Name
    host: Annotated[str, Field(max_length=261), _visible("a Host", without="/?#@")] | None = None
    path: Annotated[str, Field(max_length=8192), _visible("a path", first="/", without="#")] = "/"
    method: str = Field("GET", max_length=32, pattern=r"^[A-Z]+$")
    headers: dict[
        Annotated[str, Field(pattern=_TOKEN, max_length=128), AfterValidator(str.lower)],
        Annotated[str, Field(max_length=8192)],
    ] = Field(default_factory=dict)
    cookies: dict[
        Annotated[str, Field(pattern=_TOKEN, max_length=128)],
        Annotated[str, Field(max_length=4096), _visible("a cookie value", without=";,")],
    ] = Field(default_factory=dict)
    sni: Annotated[str, Field(max_length=253), AfterValidator(_host_name)] | None = None
    client_ip: Annotated[str, AfterValidator(_ip)] = "127.0.0.1"
    body: str | None = Field(None, max_length=65536)

    @property
    def path_only(self) -> str:
        """The path without its query string: what path conditions compare."""
        return self.path.split("?", 1)[0]

    @property
    def query_string(self) -> str | None:
        """The query string after `?`, or None."""
        return self.path.split("?", 1)[1] if "?" in self.path else None

    def query(self) -> dict[str, str]:
        """Query parameters, raw (not percent-decoded, as both proxies compare them); a name
        given twice keeps its first value."""
        found: dict[str, str] = {}
        for pair in (self.query_string or "").split("&"):
            if pair:
                name, _, value = pair.partition("=")
                found.setdefault(name, value)
        return found

    def all_cookies(self) -> dict[str, str]:
        """`cookies` and those of a `cookie` header (first occurrence of a name wins)."""
        found: dict[str, str] = {}
        for part in self.headers.get("cookie", "").split(";"):
            name, sep, value = part.strip().partition("=")
            if sep and name:
                found.setdefault(name, value)
        for name, value in self.cookies.items():
            found.setdefault(name, value)
        return found

    def host_name(self) -> str:
        """The Host compared with domains: without its port, in lower case."""
        host = (self.host or "").lower()
        return re.sub(r":[0-9]+$", "", host)

    def seen_headers(self) -> list[tuple[str, str]]:
        """The headers a proxy sees, names in lower case: Host, `headers`, the cookies of
        `cookies` in one `cookie` header when `headers` has none, a `content-length` for
        `body` when `headers` has none."""
        seen = [("host", self.host)] if self.host is not None else []
        seen += [(name, value) for name, value in self.headers.items() if name != "host"]
        if self.cookies and "cookie" not in self.headers:
            seen.append(("cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items())))
        if self.body is not None and "content-length" not in self.headers:
            seen.append(("content-length", str(len(self.body.encode()))))
        return seen

    def matched_rules(self, firewall: Firewall) -> list[str]:
        """The L7 rules of `firewall` this request matches (`firewall_checks`)."""
        body = (self.body or "").encode()
        return matched_rules(firewall, self.method, self.path, self.seen_headers(), body)

    def upgrade(self) -> str | None:
        """The protocol an upgrade request asks for (`websocket`), or None."""
        upgrade = self.headers.get("upgrade")
        connection = self.headers.get("connection", "").lower()
        return upgrade.lower() if upgrade and "upgrade" in connection else None


def parse_request(data: Any) -> Request:
    """A validated Request from plain data, or ConfigError naming each field's problem."""
    try:
        return Request.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(issues_from_pydantic(exc)) from None


# -- the parts of a decision --------------------------------------------------------------------


@dataclass(frozen=True)
class ListenerChoice:
    """The listener the request reaches and what it can see there."""

    name: str
    index: int
    protocol: str
    layer: Literal["L4", "L7"]
    groups: list[str]
    """The node groups whose proxies run this listener."""
    client_address: str
    """Where the client address comes from: the connection, or a PROXY protocol header."""


@dataclass(frozen=True)
class TlsChoice:
    """What the ClientHello's SNI chose: an https listener's certificate, or a tls
    listener's SNI route (`sni_route`), its default cluster, or nothing (`closed`)."""

    kind: Literal["certificate", "sni_route", "default_cluster", "closed"]
    index: int | None
    server_name: str | None
    """The listed name that matched (`api.example.com`, `*.example.com`), if one did."""
    why: str


@dataclass(frozen=True)
class HostChoice:
    """The virtual host the Host header chose, by which domain and rule."""

    name: str
    index: int
    domain: str
    why: Literal["exact", "wildcard", "any"]


@dataclass(frozen=True)
class Candidate:
    """Another route whose path took the request, and why it did not take it."""

    route: str
    """The route's key in its virtual host: its name, or `@N`."""
    precedence: int
    why: str


@dataclass(frozen=True)
class RouteChoice:
    """The route that took the request."""

    key: str
    index: int
    name: str | None
    where: str
    """Its field path in the config."""
    precedence: int
    """Its place in the order the host's routes are tried (0: first)."""
    path: str
    """Why its path took the request (`prefix /api`, `exact /healthz`, `regex ...`)."""
    candidates: list[Candidate]
    """The other routes whose path took it, in precedence order, with why they lost."""

    def id(self, vhost: str) -> RouteId:
        return RouteId(vhost, self.index, self.name)


@dataclass(frozen=True)
class EndpointShare:
    address: str
    weight: int
    share: float


@dataclass(frozen=True)
class BackendShare:
    """A cluster the action forwards to, its share of requests and its endpoints' shares."""

    cluster: str
    weight: int
    share: float
    lb_policy: str
    endpoints: list[EndpointShare]
    affinity: str | None = None
    """What keeps a client on one endpoint (hashing), if anything."""


@dataclass(frozen=True)
class Action:
    """What happens to the request.

    - `forward`: to `backends` (shares of requests; per connection on L4 listeners);
    - `redirect`: `status` with `location`;
    - `direct_response`: `status`, `body`, `content_type` from the proxy itself (500 for a
      route whose backends all weigh 0);
    - `preflight`: 200 from the proxy itself, a CORS preflight from an allowed origin;
    - `not_found`: 404, no virtual host or route takes it;
    - `bad_request`: 400, its Host holds a comma (how several Host headers reach a proxy);
    - `refused`: 403, an upgrade the route does not allow, the firewall blocks it (block
      mode: L7 rules matched), or a request without the header its rate limit requires;
    - `closed`: a tls listener closes a connection no SNI route takes, or address rules
      refuse the client.
    """

    kind: Literal[
        "forward",
        "redirect",
        "direct_response",
        "preflight",
        "not_found",
        "bad_request",
        "refused",
        "closed",
    ]
    status: int | None = None
    backends: list[BackendShare] = field(default_factory=list)
    location: str | None = None
    body: str | None = None
    content_type: str | None = None
    path: str | None = None
    """The path sent to the backend, when a rewrite changes it."""
    reason: str = ""

    def clusters(self) -> list[str]:
        return [b.cluster for b in self.backends]


@dataclass(frozen=True)
class Decision:
    """The whole decision for one request; `names` are what each proxy calls its parts
    (filled outside the model, by the compilers' own functions)."""

    request: Request
    listener: ListenerChoice
    action: Action
    tls: TlsChoice | None = None
    virtual_host: HostChoice | None = None
    route: RouteChoice | None = None
    policies: list[AppliedPolicy] = field(default_factory=list)
    names: dict[str, dict[str, Any]] = field(default_factory=dict)

    def route_id(self) -> RouteId | None:
        """The chosen route's identity, as the compilers name routes from it."""
        if self.route is None or self.virtual_host is None:
            return None
        return self.route.id(self.virtual_host.name)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["request"] = self.request.model_dump(exclude_defaults=False)
        return data


class UnknownListener(ConfigError):
    """The request names a listener the config does not have (an issue at `listener`)."""

    def __init__(self, name: str, known: list[str]) -> None:
        listed = ", ".join(known) or "none"
        super().__init__(
            [Issue(("listener",), f"no listener named {name!r} (listeners: {listed})")]
        )


# -- matching, as docs/model.md defines it --------------------------------------------------------


def path_takes(spec: PathMatch, path: str) -> bool:
    """Whether a route's path condition holds for `path` (without its query)."""
    if spec.exact is not None:
        return spec.exact == path
    if spec.regex is not None:
        return re.fullmatch(spec.regex, path, re.ASCII) is not None
    prefix = spec.normalized_prefix or "/"
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


def _path_text(spec: PathMatch) -> str:
    if spec.exact is not None:
        return f"exact {spec.exact}"
    if spec.regex is not None:
        return f"regex {spec.regex}"
    return f"prefix {spec.normalized_prefix}"


def _value_problem(what: str, condition: ValueMatch, value: str | None) -> str | None:
    """Why `condition` fails for `value` (None: the name is absent), or None when it holds."""
    if condition.present is not None:
        if condition.present and value is None:
            return f"{what} is absent"
        if not condition.present and value is not None:
            return f"{what} is present"
        return None
    if value is None:
        return f"{what} is absent"
    if condition.exact is not None and value != condition.exact:
        return f"{what} is {value!r}, not {condition.exact!r}"
    if condition.regex is not None and re.fullmatch(condition.regex, value, re.ASCII) is None:
        return f"{what} {value!r} does not match {condition.regex}"
    return None


def condition_problems(match: Match, request: Request) -> list[str]:
    """Why `match`'s conditions other than the path fail for `request` (empty: they hold)."""
    problems = []
    if match.method is not None and match.method != request.method:
        problems.append(f"method is {request.method}, not {match.method}")
    for condition in match.headers:
        name = condition.name.lower()
        problem = _value_problem(f"header {name}", condition, request.headers.get(name))
        if problem:
            problems.append(problem)
    query = request.query()
    for condition in match.query:
        problem = _value_problem(f"query {condition.name}", condition, query.get(condition.name))
        if problem:
            problems.append(problem)
    cookies = request.all_cookies()
    for condition in match.cookies:
        name = condition.name
        problem = _value_problem(f"cookie {name}", condition, cookies.get(name))
        if problem:
            problems.append(problem)
    return problems


def _wildcard_takes(pattern: str, name: str) -> bool:
    """Whether `*.suffix` takes `name`: one or more labels before `.suffix`."""
    suffix = pattern[1:]
    return pattern.startswith("*.") and name.endswith(suffix) and len(name) > len(suffix)


def best_name(
    listed: list[list[str]], name: str
) -> tuple[int, str, Literal["exact", "wildcard", "any"]] | None:
    """The entry whose names take `name` (index, the listed name, how): an exact name, else the
    longest `*.suffix`, else `*` (domains only)."""
    for index, names in enumerate(listed):
        if name in names:
            return index, name, "exact"
    wildcards = [
        (len(pattern), -index, pattern)
        for index, names in enumerate(listed)
        for pattern in names
        if _wildcard_takes(pattern, name)
    ]
    if wildcards:
        _, index, pattern = max(wildcards)
        return -index, pattern, "wildcard"
    for index, names in enumerate(listed):
        if "*" in names:
            return index, "*", "any"
    return None


def _server_name_choice(listed: list[list[str]], sni: str | None) -> tuple[int, str, str] | None:
    """The certificate or SNI route (index, listed name, why) whose server names take `sni`."""
    found = best_name(listed, sni) if sni is not None else None
    if found is None:
        return None
    index, name, how = found
    return index, name, "exact name" if how == "exact" else "the longest wildcard"


def choose_virtual_host(listener: Listener, host: str) -> HostChoice | None:
    """The virtual host for `host` (without port, lower case): exact, longest wildcard, `*`."""
    found = best_name([v.domains for v in listener.virtual_hosts], host)
    if found is None:
        return None
    index, domain, how = found
    return HostChoice(listener.virtual_hosts[index].name, index, domain, how)


def choose_route(
    vhost: VirtualHost, request: Request, where: str
) -> tuple[RouteChoice | None, list[Candidate]]:
    """The route of `vhost` that takes `request` (None: 404) and every route whose path took
    it, with why each of the others lost."""
    order = precedence_order(vhost.routes)
    ids = route_ids(vhost)
    path = request.path_only
    winner: int | None = None
    considered: list[tuple[int, int, list[str]]] = []
    for rank, index in enumerate(order):
        route = vhost.routes[index]
        if not path_takes(route.match.path, path):
            continue
        problems = condition_problems(route.match, request)
        considered.append((rank, index, problems))
        if winner is None and not problems:
            winner = index
    candidates = []
    for rank, index, problems in considered:
        if index == winner:
            continue
        if problems:
            why = "; ".join(problems)
        else:
            assert winner is not None
            why = "matches too, but " + decided_by(vhost.routes, winner, index)
        candidates.append(Candidate(ids[index].key, rank, why))
    if winner is None:
        return None, candidates
    route = vhost.routes[winner]
    choice = RouteChoice(
        key=ids[winner].key,
        index=winner,
        name=route.name,
        where=f"{where}.routes[{winner}]",
        precedence=order.index(winner),
        path=_path_text(route.match.path),
        candidates=candidates,
    )
    return choice, candidates


# -- actions --------------------------------------------------------------------------------------


def _affinity(cluster: Cluster) -> str | None:
    hash_on = cluster.hash_on
    if hash_on is None:
        return None
    if hash_on.cookie is not None:
        return f"cookie {hash_on.cookie.name} (set by the proxy on the first response)"
    if hash_on.header is not None:
        return f"header {hash_on.header}"
    return "the client address"


def backend_shares(config: Config, weighted: list[tuple[str, int]]) -> list[BackendShare]:
    """Each (cluster, weight) with its share, and its endpoints' shares within it."""
    total = sum(weight for _, weight in weighted)
    shares = []
    for name, weight in weighted:
        cluster = config.cluster(name)
        endpoint_total = sum(e.weight for e in cluster.endpoints)
        shares.append(
            BackendShare(
                cluster=name,
                weight=weight,
                share=round(weight / total, 6) if total else 0.0,
                lb_policy=cluster.lb_policy,
                endpoints=[
                    EndpointShare(e.address, e.weight, round(e.weight / endpoint_total, 6))
                    for e in cluster.endpoints
                ],
                affinity=_affinity(cluster),
            )
        )
    return shares


def _prefix_replaced(route: Route, replacement: str, path: str) -> str:
    """`path` with the route's matched prefix replaced by whole path elements."""
    prefix = route.match.path.normalized_prefix or "/"
    rest = path if prefix == "/" else path[len(prefix) :]
    rewrite = replacement.rstrip("/") or "/"
    if rewrite == "/":
        return "/" + rest.lstrip("/")
    return rewrite + rest if rest.startswith("/") or not rest else rewrite + "/" + rest


def _rewritten(route: Route, path: str, query: str | None) -> str | None:
    if route.path_rewrite is not None:
        new = route.path_rewrite
    elif route.prefix_rewrite is not None:
        new = _prefix_replaced(route, route.prefix_rewrite, path)
    else:
        return None
    return new + (f"?{query}" if query is not None else "")


def _location(listener: Listener, route: Route, request: Request) -> str:
    redirect = route.redirect
    assert redirect is not None
    listener_port = int(listener.address.rsplit(":", 1)[1])
    scheme, port = redirect.scheme_and_port(listener.scheme, listener_port)
    host = redirect.host or request.host_name()
    path = request.path_only
    if redirect.path is not None:
        path = redirect.path
    elif redirect.prefix_rewrite is not None:
        path = _prefix_replaced(route, redirect.prefix_rewrite, path)
    query = request.query_string
    shown_port = f":{port}" if port is not None else ""
    return f"{scheme}://{host}{shown_port}{path}" + (f"?{query}" if query is not None else "")


def is_preflight(route: Route, request: Request) -> bool:
    """Whether `request` is a CORS preflight from an origin the route's `cors` allows."""
    origin = request.headers.get("origin")
    return (
        route.cors is not None
        and request.method == "OPTIONS"
        and bool(request.headers.get("access-control-request-method"))
        and origin is not None
        and route.cors.allows(origin)
    )


def firewall_action(listener: Listener, route: Route, request: Request) -> Action | None:
    """The firewall's 403 when its L7 rules match in block mode, else None."""
    firewall = effective_firewall(listener.firewall, route.firewall)
    if firewall is None or firewall.mode != "block":
        return None
    hits = request.matched_rules(firewall)
    if not hits:
        return None
    return Action(
        "refused",
        status=403,
        body=BLOCKED_BODY,
        reason=f"the firewall blocks it (rules: {', '.join(hits)})",
    )


def _key_refusal(vhost: VirtualHost, route: Route, request: Request) -> Action | None:
    """403 for a request without the header its route's rate limit requires (`missing:
    deny`)."""
    limit = vhost.rate_limit_of(route)
    header = limit.header if limit is not None else None
    if header is None or header.missing != "deny" or header.header.lower() in request.headers:
        return None
    return Action(
        "refused",
        status=403,
        reason=f"the route's rate limit counts per {header.header} and refuses requests "
        "without it (missing: deny)",
    )


def route_action(config: Config, listener: Listener, route: Route, request: Request) -> Action:
    """What `route` does with `request`."""
    upgrade = request.upgrade()
    if upgrade is not None and not (route.websocket and upgrade == "websocket"):
        return Action(
            "refused",
            status=403,
            reason=f"the route does not allow the {upgrade} upgrade (websocket: "
            f"{str(route.websocket).lower()})",
        )
    if is_preflight(route, request):
        return Action(
            "preflight",
            status=200,
            reason="a CORS preflight from an allowed origin: the proxy answers it",
        )
    if route.redirect is not None:
        return Action(
            "redirect",
            status=route.redirect.status,
            location=_location(listener, route, request),
            reason="the route redirects",
        )
    if route.direct_response is not None:
        answer = route.direct_response
        return Action(
            "direct_response",
            status=answer.status,
            body=answer.body,
            content_type=answer.content_type,
            reason="the route answers itself",
        )
    if route.weightless:
        return Action("direct_response", status=500, reason="every backend of the route weighs 0")
    weighted = [(b.cluster, b.weight) for b in route.backends or ()]
    return Action(
        "forward",
        backends=backend_shares(config, weighted),
        path=_rewritten(route, request.path_only, request.query_string),
        reason="each request picks a backend by weight"
        if len(weighted) > 1
        else "the route's one backend",
    )


# -- the whole decision ---------------------------------------------------------------------------


def _listener(config: Config, name: str) -> tuple[int, Listener]:
    for index, listener in enumerate(config.listeners):
        if listener.name == name:
            return index, listener
    raise UnknownListener(name, [x.name for x in config.listeners])


def _groups(config: Config, name: str) -> list[str]:
    if not config.node_groups:
        return config.group_names()
    return [g.name for g in config.node_groups if name in g.listeners]


def decide(config: Config, request: Request) -> Decision:
    """The decision for `request` (UnknownListener when its listener is not in `config`)."""
    index, listener = _listener(config, request.listener)
    chosen = ListenerChoice(
        name=listener.name,
        index=index,
        protocol=listener.protocol,
        layer="L7" if listener.is_l7 else "L4",
        groups=_groups(config, listener.name),
        client_address="a PROXY protocol header"
        if listener.accept_proxy_protocol
        else "the connection",
    )
    refusal = address_refusal(listener.addresses, request.client_ip)
    if refusal is not None:
        action = Action("closed", reason=f"address rules refuse the client: {refusal}")
        refused = Decision(request, chosen, action)
        return replace(refused, policies=applied_policies(config, listener, None, refused))
    if not listener.is_l7:
        return _decide_l4(config, listener, chosen, request)
    tls = None
    if listener.protocol == "https":
        names = [c.server_names for c in listener.certificates]
        found = _server_name_choice(names, request.sni)
        tls = (
            TlsChoice("certificate", found[0], found[1], found[2])
            if found
            else TlsChoice("certificate", 0, None, "no server name matched: the first certificate")
        )
    if "," in (request.host or ""):
        action = Action("bad_request", status=400, reason="the Host holds a comma")
        return Decision(request, chosen, action, tls)
    host = choose_virtual_host(listener, request.host_name())
    if host is None:
        action = Action("not_found", status=404, reason="no virtual host takes this Host")
        return Decision(request, chosen, action, tls)
    vhost = listener.virtual_hosts[host.index]
    where = f"listeners[{index}].virtual_hosts[{host.index}]"
    route_choice, candidates = choose_route(vhost, request, where)
    if route_choice is None:
        reason = "no route of the virtual host takes this request"
        if candidates:
            reason += " (" + "; ".join(f"{c.route}: {c.why}" for c in candidates) + ")"
        return Decision(request, chosen, Action("not_found", status=404, reason=reason), tls, host)
    route = vhost.routes[route_choice.index]
    action = (
        firewall_action(listener, route, request)
        or _key_refusal(vhost, route, request)
        or route_action(config, listener, route, request)
    )
    decision = Decision(request, chosen, action, tls, host, route_choice)
    return Decision(
        request,
        chosen,
        action,
        tls,
        host,
        route_choice,
        applied_policies(config, listener, route, decision),
    )


def _decide_l4(
    config: Config, listener: Listener, chosen: ListenerChoice, request: Request
) -> Decision:
    if listener.protocol == "tcp":
        assert listener.default_cluster is not None
        action = Action(
            "forward",
            backends=backend_shares(config, [(listener.default_cluster, 1)]),
            reason="every connection goes to default_cluster",
        )
        decision = Decision(request, chosen, action)
        return Decision(
            request, chosen, action, policies=applied_policies(config, listener, None, decision)
        )
    found = _server_name_choice([r.server_names for r in listener.sni_routes], request.sni)
    if found is not None:
        index, name, why = found
        tls = TlsChoice("sni_route", index, name, why)
        cluster = listener.sni_routes[index].cluster
        action = Action(
            "forward",
            backends=backend_shares(config, [(cluster, 1)]),
            reason="TLS passthrough: the SNI route's cluster, still encrypted",
        )
    elif listener.default_cluster is not None:
        tls = TlsChoice("default_cluster", None, None, "no SNI route takes this server name")
        action = Action(
            "forward",
            backends=backend_shares(config, [(listener.default_cluster, 1)]),
            reason="TLS passthrough: default_cluster, still encrypted",
        )
    else:
        tls = TlsChoice("closed", None, None, "no SNI route takes it and there is no default")
        action = Action("closed", reason="the connection is closed")
    decision = Decision(request, chosen, action, tls)
    return Decision(
        request, chosen, action, tls, policies=applied_policies(config, listener, None, decision)
    )
