"""Routes that answer themselves: redirects (`redirect`), direct responses
(`direct_response`) and forwarding routes whose backends all weigh 0 (500), one rule each, in
declaration order, for the route decided."""

from __future__ import annotations

from dataclasses import dataclass

from ...model import Listener, Route, split_address
from ..render_text import lf_literal
from ..scopes import ListenerScope
from .base import Feature

WEIGHTLESS_STATUS = 500
"""The answer of a route whose backends all weigh 0, as the Gateway API says."""
QUERY = "%[url,regsub(^[^?]*,)]"
"""The request's query with its `?` (empty without one), in a log-format string."""


@dataclass(frozen=True)
class Answer:
    """One route's answer: a direct response (`location` None) or a redirect."""

    route: str
    label: str
    where: str
    status: int
    content_type: str = ""
    body: str = ""
    location: str | None = None
    """The redirect's target, a log-format string."""


class Answers(Feature):
    name = "answers"

    def request(self, scope: ListenerScope) -> list[Answer] | None:
        answers = []
        for entry in scope.routes:
            route = entry.route
            if route.direct_response is not None:
                answer = route.direct_response
                answers.append(
                    Answer(
                        entry.id,
                        entry.name,
                        entry.where,
                        answer.status,
                        answer.content_type,
                        answer.body or "",
                    )
                )
            elif route.weightless:
                answers.append(
                    Answer(entry.id, entry.name, entry.where, WEIGHTLESS_STATUS, "text/plain")
                )
            elif route.redirect is not None:
                location = _location(scope.listener, route)
                answers.append(
                    Answer(
                        entry.id,
                        entry.name,
                        entry.where,
                        route.redirect.status,
                        location=location,
                    )
                )
        return answers or None


def _location(listener: Listener, route: Route) -> str:
    """Where a redirect sends the client, keeping what the redirect does not change; the
    port as `Redirect.scheme_and_port` says (the request's Host has lost its port already)."""
    redirect = route.redirect
    assert redirect is not None
    scheme, port_number = redirect.scheme_and_port(
        listener.scheme, split_address(listener.address).port
    )
    port = f":{port_number}" if port_number is not None else ""
    if redirect.host is not None:
        host = lf_literal(redirect.host) + port
    else:
        host = "%[req.fhdr(host),regsub(:[0-9]+$,)]" + port
    if redirect.path is not None:
        path = lf_literal(redirect.path) + QUERY
    elif redirect.prefix_rewrite is not None:
        path = _prefix_replaced(route, redirect.prefix_rewrite) + QUERY
    else:
        path = "%[pathq]"
    return f"{scheme}://{host}{path}"


def _prefix_replaced(route: Route, target: str) -> str:
    """The request's path with the route's matched prefix replaced by `target`, element by
    element (as `prefix_rewrite` does), in a log-format string."""
    prefix = route.match.path.normalized_prefix or "/"
    rewrite = target.rstrip("/") or "/"
    if prefix == "/":
        return "%[path]" if rewrite == "/" else lf_literal(rewrite) + "/%[path,bytes(1)]"
    if rewrite == "/":
        return f"/%[path,bytes({len(prefix)}),regsub(^/+,)]"
    return lf_literal(rewrite) + f"%[path,bytes({len(prefix)})]"
