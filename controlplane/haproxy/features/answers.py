"""Routes that answer themselves: redirects (`redirect`) and direct responses
(`direct_response`), one rule each, in declaration order, for the route decided."""

from __future__ import annotations

from dataclasses import dataclass

from ...model import Listener, Route
from ..render_text import lf_literal
from ..scopes import ListenerScope
from .base import Feature

_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


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
    """Where a redirect sends the client, keeping what the redirect does not change."""
    redirect = route.redirect
    assert redirect is not None
    scheme = redirect.scheme or ("https" if listener.protocol == "https" else "http")
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
