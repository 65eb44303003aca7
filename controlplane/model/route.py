"""L7 routes: which requests a route takes and what it does with them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Literal

from pydantic import Field

from .firewall import Firewall
from .limits import RateLimit
from .regex import Regex
from .types import (
    Domain,
    Duration,
    HeaderName,
    HeaderValue,
    HostName,
    MatchName,
    MediaType,
    Method,
    Model,
    Name,
    Origin,
    ResponseBody,
    Timeout,
    UrlPath,
    duration_field,
    model_check,
)


def _one_of(obj: Model, fields: tuple[str, ...]) -> None:
    chosen = [f for f in fields if getattr(obj, f) is not None]
    if len(chosen) != 1:
        raise ValueError(f"set exactly one of {', '.join(fields)}")


class PathMatch(Model):
    """How the request path (without its query string) must look; exactly one is set.

    `prefix` matches whole path elements: `/api` matches `/api`, `/api/` and `/api/x`,
    never `/apix`; a trailing `/` is ignored (`/api/` means `/api`). `regex` must match the
    whole path.
    """

    exact: UrlPath | None = None
    prefix: UrlPath | None = None
    regex: Regex | None = None

    @model_check
    def _one(self) -> PathMatch:
        _one_of(self, ("exact", "prefix", "regex"))
        return self

    @property
    def normalized_prefix(self) -> str | None:
        """The prefix without a trailing `/` (`/` itself stays `/`)."""
        if self.prefix is None:
            return None
        return self.prefix.rstrip("/") or "/"


class ValueMatch(Model):
    """A named value (header, query parameter or cookie) and the condition on it.

    Exactly one of `exact` (the whole value), `regex` (must match the whole value) or
    `present` (`true`: the name appears with any value; `false`: it does not appear).
    Header names are case-insensitive; query parameter and cookie names are not.
    """

    name: MatchName
    exact: HeaderValue | None = None
    regex: Regex | None = None
    present: bool | None = None

    @model_check
    def _one(self) -> ValueMatch:
        _one_of(self, ("exact", "regex", "present"))
        return self


class Match(Model):
    """The conditions a request must meet, all of them, for a route to take it."""

    path: PathMatch = Field(default_factory=lambda: PathMatch(prefix="/"))
    method: Method | None = None
    headers: list[ValueMatch] = Field(default_factory=list)
    query: list[ValueMatch] = Field(default_factory=list)
    cookies: list[ValueMatch] = Field(default_factory=list)


class HeaderMutation(Model):
    """Header changes applied in the order remove, set (replace or create), add (append)."""

    set: dict[HeaderName, HeaderValue] = Field(default_factory=dict)
    add: dict[HeaderName, HeaderValue] = Field(default_factory=dict)
    remove: list[HeaderName] = Field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.set or self.add or self.remove)


def _host_rules(request: HeaderMutation, response: HeaderMutation) -> None:
    if "host" in request.add or "host" in request.remove:
        raise ValueError("a request has exactly one Host: set it (a host rewrite) instead")
    if "host" in response.set or "host" in response.add or "host" in response.remove:
        raise ValueError("Host is a request header; response_headers cannot change it")


class WeightedBackend(Model):
    """A cluster and its weight; each request picks one backend with probability weight/sum.

    A backend of weight 0 gets no traffic (kept in place for a quick shift); a route whose
    backends all weigh 0 answers 500. `request_headers` and `response_headers` change the
    requests sent to this backend and its answers: a request gets the route's mutations,
    then the backend's; an answer the backend's, then the route's.
    """

    cluster: Name
    weight: int = Field(1, ge=0, le=10_000)
    request_headers: HeaderMutation = Field(default_factory=HeaderMutation)
    response_headers: HeaderMutation = Field(default_factory=HeaderMutation)

    @model_check
    def _hosts(self) -> WeightedBackend:
        _host_rules(self.request_headers, self.response_headers)
        return self


class Mirror(Model):
    """A copy of each request (or of `percent` of them) sent to `cluster`; its answer is
    dropped and never delays the client's."""

    cluster: Name
    percent: float = Field(100, gt=0, le=100, multiple_of=0.0001)


class OriginMatch(Model):
    """An allowed origin: `exact` (`https://www.example.com`, with its port if it has one) or
    a `regex` the whole origin must match; exactly one is set."""

    exact: Origin | None = None
    regex: Regex | None = None

    @model_check
    def _one(self) -> OriginMatch:
        _one_of(self, ("exact", "regex"))
        return self


CorsMethod = Literal["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "*"]


class Cors(Model):
    """Cross-origin requests a browser may make to this route (CORS).

    A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) from an allowed
    origin is answered 200 by the proxy, without a body and without reaching a backend, with
    `access-control-allow-origin` (the request's origin), `-allow-methods`, `-allow-headers`,
    `-expose-headers` and `-max-age` as set (each list joined with `, `; a list of `*` alone
    answers with what the preflight asks for) and `-allow-credentials: true` when
    `allow_credentials`. Other requests from an allowed
    origin get `-allow-origin`, `-expose-headers` and `-allow-credentials` on their answer.
    Requests from other origins are handled as if the route had no CORS policy.
    """

    allow_origins: list[OriginMatch] = Field(min_length=1)
    allow_methods: list[CorsMethod] = Field(default_factory=list)
    allow_headers: list[HeaderName] = Field(default_factory=list)
    expose_headers: list[HeaderName] = Field(default_factory=list)
    max_age: Duration | None = Field(
        None, description="How long a browser may keep a preflight's answer (whole seconds)."
    )
    allow_credentials: bool = False

    @model_check
    def _whole_seconds(self) -> Cors:
        if self.max_age is not None and self.max_age % 1000:
            raise ValueError("max_age is a whole number of seconds")
        for name in ("allow_methods", "allow_headers", "expose_headers"):
            values = getattr(self, name)
            if "*" in values and len(values) > 1:
                raise ValueError(f"{name}: '*' stands alone (it allows any)")
        return self

    def allows(self, origin: str) -> bool:
        """Whether `origin` (an `Origin` header's value) is one of `allow_origins`."""
        return any(
            origin == allowed.exact
            if allowed.exact is not None
            else re.fullmatch(allowed.regex or "", origin, re.ASCII) is not None
            for allowed in self.allow_origins
        )


RetryOn = Literal["connect_failure", "reset", "gateway_error", "5xx"]


def _connect_failure_only() -> list[RetryOn]:
    return ["connect_failure"]


class Retries(Model):
    """Retry a failed attempt up to `attempts` more times, on another endpoint when one exists.

    Conditions: `connect_failure` (no connection could be made), `reset` (the connection
    closed before a response), `gateway_error` (502, 503 or 504), `5xx` (any 5xx status,
    plus connect failures and resets).
    """

    attempts: int = Field(1, ge=1, le=10)
    retry_on: list[RetryOn] = Field(default_factory=_connect_failure_only, min_length=1)


WELL_KNOWN_PORTS = {"http": 80, "https": 443}


class Redirect(Model):
    """Answer with a redirect to an absolute URL built from the request's, with the parts set
    here replaced; the query is kept.

    The port, when `port` is not set: the listener's own when `scheme` is not set either,
    else the scheme's well-known one. A port well known for the URL's scheme (80 for http,
    443 for https) is left out of the Location. `path` replaces the whole path;
    `prefix_rewrite` only the matched prefix, as the route's `prefix_rewrite` does.
    """

    scheme: Literal["http", "https"] | None = None
    host: HostName | None = None
    port: int | None = Field(None, ge=1, le=65535)
    path: UrlPath | None = None
    prefix_rewrite: UrlPath | None = None
    status: Literal[301, 302, 303, 307, 308] = 302

    @model_check
    def _one_path(self) -> Redirect:
        if self.path is not None and self.prefix_rewrite is not None:
            raise ValueError("set at most one of path, prefix_rewrite")
        return self

    def scheme_and_port(self, listener_scheme: str, listener_port: int) -> tuple[str, int | None]:
        """The Location's scheme and port, for a listener of that scheme and port; the port is
        None when it is the scheme's well-known one (left out of the Location)."""
        scheme = self.scheme or listener_scheme
        if self.port is not None:
            port = self.port
        elif self.scheme is None:
            port = listener_port
        else:
            port = WELL_KNOWN_PORTS[scheme]
        return scheme, None if port == WELL_KNOWN_PORTS.get(scheme) else port


class DirectResponse(Model):
    """Answer from the proxy itself, without any backend. The body is text of at most 4096
    bytes of UTF-8 and may span lines."""

    multiline_fields: ClassVar[frozenset[str]] = frozenset({"body"})

    status: int = Field(ge=200, le=599)
    body: ResponseBody = ""
    content_type: MediaType = "text/plain"


class Route(Model):
    """A rule of a virtual host: when `match` holds, do exactly one action.

    Actions: `backends` (forward to weighted clusters), `redirect`, or `direct_response`.
    Forwarding options (`timeout`, `retries`, `prefix_rewrite`, `path_rewrite`, `mirrors`,
    `websocket`, header mutations) apply to forwarded requests only; `response_headers` and
    `cors` apply to every answer.
    Which route takes a request is decided by precedence, not by list order alone; see
    `controlplane.model.precedence`.
    """

    name: Name | None = None
    match: Match = Field(default_factory=Match)
    backends: list[WeightedBackend] | None = Field(None, min_length=1)
    redirect: Redirect | None = None
    direct_response: DirectResponse | None = None
    timeout: Timeout = duration_field(
        15_000,
        "How long one attempt may wait for the backend's answer (then 504); with retries a "
        "request takes at most (1 + attempts) x timeout; 'none' (or '0s'): no timeout.",
    )
    retries: Retries | None = None
    prefix_rewrite: UrlPath | None = Field(
        None,
        description="Replace the matched path prefix with this (prefix matches only).",
    )
    path_rewrite: UrlPath | None = Field(
        None, description="Replace the whole path with this; the query is kept."
    )
    mirrors: list[Mirror] = Field(default_factory=list)
    cors: Cors | None = None
    websocket: bool = Field(False, description="Allow WebSocket upgrades on this route.")
    request_headers: HeaderMutation = Field(default_factory=HeaderMutation)
    response_headers: HeaderMutation = Field(default_factory=HeaderMutation)
    rate_limit: RateLimit | Literal[False] | None = Field(
        None,
        description="This route's request rate limit; false: none, whatever its virtual host "
        "sets; unset: its virtual host's.",
    )
    firewall: Firewall | None = Field(
        None,
        description="This route's firewall, replacing the listener's; {enabled: false} "
        "switches it off here.",
    )

    @model_check
    def _action(self) -> Route:
        _one_of(self, ("backends", "redirect", "direct_response"))
        _host_rules(self.request_headers, self.response_headers)
        prefix_rewrites = [self.prefix_rewrite, self.redirect and self.redirect.prefix_rewrite]
        if any(p is not None for p in prefix_rewrites) and self.match.path.prefix is None:
            raise ValueError("prefix_rewrite needs a prefix path match")
        if self.prefix_rewrite is not None and self.path_rewrite is not None:
            raise ValueError("set at most one of prefix_rewrite, path_rewrite")
        if self.mirrors and self.backends is None:
            raise ValueError("mirrors copy forwarded requests; this route has no backends")
        return self

    @property
    def mutates_per_backend(self) -> bool:
        """Whether a backend of the route changes headers of its own."""
        return any(b.request_headers or b.response_headers for b in self.backends or ())

    @property
    def weightless(self) -> bool:
        """Whether the route forwards but every backend weighs 0 (it answers 500)."""
        return self.backends is not None and not any(b.weight for b in self.backends)


class VirtualHost(Model):
    """Routes for a set of host names.

    `domains`: exact names (`api.example.com`), a leading wildcard (`*.example.com`, one or
    more labels) or `*` (any host). A request's Host is compared without its port and
    case-insensitively; the most specific domain wins: exact, then the longest wildcard,
    then `*`.
    """

    name: Name
    domains: list[Domain] = Field(min_length=1)
    routes: list[Route] = Field(min_length=1)
    rate_limit: RateLimit | None = Field(
        None, description="The rate limit of each route that sets none of its own."
    )

    def rate_limit_of(self, route: Route) -> RateLimit | None:
        """The limit `route` (one of this host's) runs: its own, else the host's; none when it
        says `rate_limit: false`. Each route counts in buckets of its own."""
        if route.rate_limit is False:
            return None
        return route.rate_limit or self.rate_limit


@dataclass(frozen=True)
class RouteId:
    """Who a route is, within its config: its virtual host, its position there, its name.

    `key` is how the API addresses it in its virtual host: its name, or `@N` for the unnamed
    route at position N. Each compiler names routes from these parts in its own syntax.
    """

    vhost: str
    index: int
    name: str | None

    @property
    def key(self) -> str:
        return self.name or f"@{self.index}"


def route_ids(vhost: VirtualHost) -> list[RouteId]:
    """The identity of each route of `vhost`, in declaration order."""
    return [RouteId(vhost.name, index, route.name) for index, route in enumerate(vhost.routes)]
