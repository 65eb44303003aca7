"""CORS (`cors` of a route), answered as Envoy's CORS filter answers.

When the route decided has a CORS policy and the request's `Origin` is one it allows (an
exact origin, or a regex over the whole origin), `txn.cors` is set and the origin kept in
`txn.origin`. A preflight (`OPTIONS` with a non-empty `Access-Control-Request-Method`) then
sets `txn.preflight` and gets the proxy's own 200; its preflight headers are set on that
answer (`http-after-response`, from what the preflight asked, kept in `txn.acrm` and
`txn.acrh`, for a list of `*`). Every answer to an allowed origin, the preflight's included,
gets `access-control-allow-origin`, `-allow-credentials` and `-expose-headers`. The rules
that recognise origins and set headers are per CORS route (their values are the route's own
words).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...model import Cors
from ..render_text import Raw, dq, lf_literal
from ..scopes import ListenerScope
from .base import Feature

ORIGIN = "%[var(txn.origin)]"


@dataclass(frozen=True)
class CorsRoute:
    """One route's policy: how an allowed origin is recognised (`exact` an ACL term, or
    `regexes`), the headers of its preflights' answers and those of every answer to an
    allowed origin (values are log-format strings)."""

    route: str
    label: str
    where: str
    exact: Raw | None
    regexes: list[str] = field(default_factory=list)
    preflight: list[tuple[str, str]] = field(default_factory=list)
    answer: list[tuple[str, str]] = field(default_factory=list)


def _allowed(values: list[str], requested: str) -> str:
    """A preflight's allow list, as a log-format string: `*` alone echoes what the preflight
    asked for (`requested`, a variable; as Envoy does), anything else is literal."""
    if values == ["*"]:
        return f"%[var({requested})]"
    return lf_literal(", ".join(values))


def _headers(cors: Cors) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    preflight = []
    if cors.allow_methods:
        allowed = _allowed(list(cors.allow_methods), "txn.acrm")
        preflight.append(("access-control-allow-methods", allowed))
    if cors.allow_headers:
        allowed = _allowed(cors.allow_headers, "txn.acrh")
        preflight.append(("access-control-allow-headers", allowed))
    if cors.max_age is not None:
        preflight.append(("access-control-max-age", str(cors.max_age // 1000)))
    answer = [("access-control-allow-origin", ORIGIN)]
    if cors.allow_credentials:
        answer.append(("access-control-allow-credentials", "true"))
    if cors.expose_headers:
        answer.append(("access-control-expose-headers", lf_literal(", ".join(cors.expose_headers))))
    return preflight, answer


class CorsPolicies(Feature):
    name = "cors"

    def request(self, scope: ListenerScope) -> list[CorsRoute] | None:
        found = []
        for entry in scope.routes:
            cors = entry.route.cors
            if cors is None:
                continue
            exact = [o.exact for o in cors.allow_origins if o.exact is not None]
            regexes = [o.regex for o in cors.allow_origins if o.regex is not None]
            term = None
            if exact:
                term = Raw("{ req.fhdr(origin) -m str -- %s }") % Raw(" ").join(
                    dq(origin) for origin in exact
                )
            preflight, answer = _headers(cors)
            found.append(
                CorsRoute(entry.id, entry.name, entry.where, term, regexes, preflight, answer)
            )
        return found or None

    def response(self, scope: ListenerScope) -> list[CorsRoute] | None:
        return self.request(scope)
