"""HTTP methods as RFC 9110 has them: HEAD wherever GET is (the same answer without its
body), and a 405 that lists in `Allow` every method the path takes."""

from __future__ import annotations

from fastapi import Request
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    """Answers HEAD as the GET of the same URL would be answered, without the body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def head_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, head_only)


METHODS = ("DELETE", "GET", "PATCH", "POST", "PUT")
"""The methods routes of the API may take (HEAD comes with GET)."""


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app takes at the request's path, asked of the routes
    themselves (included routers answer for theirs)."""
    allowed = set()
    for method in METHODS:
        probe = {**request.scope, "method": method}
        if any(route.matches(probe)[0] is Match.FULL for route in request.app.router.routes):
            allowed.add(method)
    if "GET" in allowed:
        allowed.add("HEAD")
    return sorted(allowed)
