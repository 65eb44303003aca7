"""L7 routes: which requests a route takes and what it does with them."""

from __future__ import annotations

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
    ResponseBody,
    UrlPath,
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


class WeightedBackend(Model):
    """A cluster and its weight; each request picks one backend with probability weight/sum."""

    cluster: Name
    weight: int = Field(1, ge=1, le=10_000)


class HeaderMutation(Model):
    """Header changes applied in the order remove, set (replace or create), add (append)."""

    set: dict[HeaderName, HeaderValue] = Field(default_factory=dict)
    add: dict[HeaderName, HeaderValue] = Field(default_factory=dict)
    remove: list[HeaderName] = Field(default_factory=list)


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


class Redirect(Model):
    """Answer with a redirect; parts left unset keep the request's own value."""

    scheme: Literal["http", "https"] | None = None
    host: HostName | None = None
    port: int | None = Field(None, ge=1, le=65535)
    path: UrlPath | None = None
    status: Literal[301, 302, 303, 307, 308] = 302


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
    Forwarding options (`timeout`, `retries`, `prefix_rewrite`, `websocket`, header
    mutations) apply to forwarded requests only; `response_headers` apply to every answer.
    Which route takes a request is decided by precedence, not by list order alone; see
    `controlplane.model.precedence`.
    """

    name: Name | None = None
    match: Match = Field(default_factory=Match)
    backends: list[WeightedBackend] | None = Field(None, min_length=1)
    redirect: Redirect | None = None
    direct_response: DirectResponse | None = None
    timeout: Duration = Field(
        15_000,
        description="How long one attempt may wait for the backend's answer (then 504); with "
        "retries a request takes at most (1 + attempts) x timeout.",
    )
    retries: Retries | None = None
    prefix_rewrite: UrlPath | None = Field(
        None,
        description="Replace the matched path prefix with this (prefix matches only).",
    )
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
        response, request = self.response_headers, self.request_headers
        if "host" in request.add or "host" in request.remove:
            raise ValueError("a request has exactly one Host: set it (a host rewrite) instead")
        if "host" in response.set or "host" in response.add or "host" in response.remove:
            raise ValueError("Host is a request header; response_headers cannot change it")
        if self.prefix_rewrite is not None and self.match.path.prefix is None:
            raise ValueError("prefix_rewrite needs a prefix path match")
        return self


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
