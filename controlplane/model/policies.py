"""The policies that apply to a decided request: the extension point of `decision.decide`.

A policy explainer looks at the listener, the route that took the request (None on L4
listeners and for requests no route takes) and the decision so far, and yields an
`AppliedPolicy` for each policy that applies: its kind, one line an operator reads, and the
detail a machine reads (a rate limit's bucket key, the firewall rule that matched). A new
policy (rate limits, firewall rules) adds one function here and registers it in `POLICIES`,
in the order the proxies apply them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .config import Config
from .firewall import effective_firewall
from .firewall_checks import protocol_problem
from .limits import RateLimit
from .listener import Listener
from .route import HeaderMutation, Route
from .types import format_duration

if TYPE_CHECKING:
    from .decision import Decision


@dataclass(frozen=True)
class AppliedPolicy:
    """A policy that applies to the request: its kind, one line saying what it does, and the
    detail (JSON-able) an operator needs, e.g. a rate limit's bucket key."""

    kind: str
    summary: str
    detail: dict[str, Any] = field(default_factory=dict)
    may_answer: int | None = None
    """A status the proxy answers itself instead of the action when a verdict the model cannot
    foresee says so (the CRS's 403)."""


PolicyExplainer = Callable[[Config, Listener, Route | None, "Decision"], Iterator[AppliedPolicy]]


def _applied(kind: str, summary: str, **detail: object) -> AppliedPolicy:
    return AppliedPolicy(kind, summary, dict(detail))


def _forwards(decision: Decision) -> bool:
    return decision.action.kind == "forward"


def client_address(
    config: Config, listener: Listener, route: Route | None, decision: Decision
) -> Iterator[AppliedPolicy]:
    """What the backend learns of the client: X-Forwarded-For, x-request-id, PROXY protocol."""
    if listener.is_l7 and listener.forwarded_for and _forwards(decision):
        yield _applied(
            "forwarded_for",
            f"X-Forwarded-For gets {decision.request.client_ip} appended",
            header="x-forwarded-for",
        )
    if listener.request_id and _forwards(decision):
        has = "x-request-id" in decision.request.headers
        yield _applied(
            "request_id",
            "the client's x-request-id is kept" if has else "x-request-id is generated",
            header="x-request-id",
        )
    for backend in decision.action.backends:
        if config.cluster(backend.cluster).send_proxy_protocol:
            yield _applied(
                "proxy_protocol",
                f"cluster {backend.cluster} is sent a PROXY v2 header with the client address",
                cluster=backend.cluster,
            )


def _mutation(which: str, mutation: HeaderMutation) -> AppliedPolicy | None:
    if not (mutation.remove or mutation.set or mutation.add):
        return None
    parts = []
    if mutation.remove:
        parts.append("remove " + ", ".join(mutation.remove))
    if mutation.set:
        parts.append("set " + ", ".join(mutation.set))
    if mutation.add:
        parts.append("add " + ", ".join(mutation.add))
    return _applied(
        f"{which}_headers",
        f"{which} headers: " + "; ".join(parts),
        remove=list(mutation.remove),
        set=dict(mutation.set),
        add=dict(mutation.add),
    )


def header_mutations(
    config: Config, listener: Listener, route: Route | None, decision: Decision
) -> Iterator[AppliedPolicy]:
    """Request header changes (forwarded requests only) and response header changes (every
    answer the route gives)."""
    if route is None or decision.action.kind == "refused":
        return
    if _forwards(decision):
        request = _mutation("request", route.request_headers)
        if request is not None:
            yield request
    response = _mutation("response", route.response_headers)
    if response is not None:
        yield response


def forwarding(
    config: Config, listener: Listener, route: Route | None, decision: Decision
) -> Iterator[AppliedPolicy]:
    """The timeout and the retries of a forwarded request."""
    if route is None or not _forwards(decision):
        return
    attempts = 1 + (route.retries.attempts if route.retries else 0)
    yield _applied(
        "timeout",
        f"each attempt waits {format_duration(route.timeout)} for the backend (then 504)",
        per_attempt=format_duration(route.timeout),
        total=format_duration(route.timeout * attempts),
    )
    if route.retries is not None:
        yield _applied(
            "retries",
            f"up to {route.retries.attempts} more attempts on " + ", ".join(route.retries.retry_on),
            attempts=route.retries.attempts,
            retry_on=list(route.retries.retry_on),
        )
    if route.websocket:
        yield _applied("websocket", "WebSocket upgrades are allowed", upgrade="websocket")


def _bucket(limit: RateLimit, decision: Decision) -> tuple[str, str]:
    """Which bucket of the route counts the request: its detail, and how to say it."""
    header = limit.header
    if header is not None:
        value = decision.request.headers.get(header.header.lower())
        if value is None:
            return "", f"requests without {header.header} share one bucket"
        return value, f"per {header.header}: the bucket of {value!r}"
    if limit.key == "client_ip":
        ip = decision.request.client_ip
        return ip, f"per client address: the bucket of {ip}"
    return "", "one bucket for the route"


def rate_limit(
    config: Config, listener: Listener, route: Route | None, decision: Decision
) -> Iterator[AppliedPolicy]:
    """The route's request rate limit (its own or its virtual host's): which bucket counts the
    request; an empty bucket answers 429."""
    if route is None or decision.virtual_host is None or decision.action.kind == "refused":
        return
    limit = listener.virtual_hosts[decision.virtual_host.index].rate_limit_of(route)
    if limit is None:
        return
    key, bucket = _bucket(limit, decision)
    per = format_duration(limit.per)
    scope = (
        "each proxy counts on its own"
        if limit.scope == "proxy"
        else "the group's connected proxies share it"
    )
    yield _applied(
        "rate_limit",
        f"at most {limit.requests} per {per} (bursts of {limit.capacity}), {bucket}; 429 when "
        f"it is empty; {scope}",
        requests=limit.requests,
        per=per,
        burst=limit.capacity,
        key=limit.key if isinstance(limit.key, str) else {"header": limit.key.header},
        bucket=key,
        scope=limit.scope,
    )


def firewall(
    config: Config, listener: Listener, route: Route | None, decision: Decision
) -> Iterator[AppliedPolicy]:
    """Address rules (who may connect), and the route's firewall: the L7 rules the request
    matched, and the CRS inspection whose verdict is the verdict service's."""
    rules = listener.addresses
    if rules is not None:
        refused = decision.action.kind == "closed" and decision.tls is None
        client = decision.request.client_ip
        yield _applied(
            "addresses",
            f"address rules refuse {client}: the connection closes before a byte is read"
            if refused
            else f"address rules let {client} in",
            client=client,
            refused=refused,
            allow=len(rules.allow),
            deny=len(rules.deny),
        )
    if route is None:
        return
    checks = effective_firewall(listener.firewall, route.firewall)
    if checks is None:
        if (route.firewall or listener.firewall) is not None:
            yield _applied("firewall", "the firewall is switched off on this route", enabled=False)
        return
    hits = decision.request.matched_rules(checks)
    if checks.has_l7_rules:
        if not hits:
            summary = "no L7 rule matches"
        else:
            request = decision.request
            problem = protocol_problem(request.path, request.seen_headers())
            named = ", ".join(f"protocol ({problem})" if h == "protocol" else h for h in hits)
            outcome = "blocked: 403" if checks.mode == "block" else "detect: let through"
            summary = f"L7 rules match: {named} ({outcome})"
        yield _applied("firewall", summary, mode=checks.mode, matched=hits)
    crs = checks.crs
    if crs is not None and not (hits and checks.mode == "block"):
        blocks = checks.mode == "block" or crs.failure == "closed"
        yield AppliedPolicy(
            "crs",
            f"OWASP CRS at paranoia level {crs.paranoia_level} (anomaly threshold "
            f"{crs.anomaly_threshold}) inspects it at {crs.service}: the verdict service decides"
            + (" (detect: let through, x-waf-rules)" if checks.mode == "detect" else ""),
            {
                "mode": checks.mode,
                "paranoia_level": crs.paranoia_level,
                "anomaly_threshold": crs.anomaly_threshold,
                "exclusions": list(crs.exclusions),
                "service": crs.service,
                "failure": crs.failure,
            },
            may_answer=403 if blocks else None,
        )


POLICIES: tuple[PolicyExplainer, ...] = (
    firewall,
    rate_limit,
    client_address,
    header_mutations,
    forwarding,
)
"""Every policy explainer, in the order the proxies apply the policies."""


def applied_policies(
    config: Config, listener: Listener, route: Route | None, decision: Decision
) -> list[AppliedPolicy]:
    """Every policy that applies to `decision`, from each explainer in `POLICIES`."""
    return [p for explainer in POLICIES for p in explainer(config, listener, route, decision)]
