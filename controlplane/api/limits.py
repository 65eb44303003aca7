"""The largest request body the API reads: bigger ones are answered 413 before parsing."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_response

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024


class BodyTooLarge(HTTPException):
    """A request body went past the limit while it was being read."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the body is larger than {limit} bytes")
        self.limit = limit


def too_large(limit: int) -> JSONResponse:
    """The 413 of a body over `limit` bytes, in the common error shape."""
    message = f"the body is larger than {limit} bytes"
    return error_response(413, message, [{"path": "body", "message": message}])


class BodyLimit:
    """Refuses request bodies over `limit` bytes: at once when Content-Length says so, and
    otherwise (chunked bodies, or a Content-Length that lies) as soon as the bytes read so
    far pass it, before anything parses them."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            await too_large(self.limit)(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except BodyTooLarge:
            if started:
                raise
            await too_large(self.limit)(scope, receive, send)


def install_body_limit(app: FastAPI, limit: int) -> None:
    """Refuse bodies over `limit` bytes (413) everywhere in `app`."""
    if limit < 0:
        raise ValueError(f"the body limit must be 0 or more bytes, not {limit}")

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return too_large(exc.limit)

    app.add_middleware(BodyLimit, limit=limit)
