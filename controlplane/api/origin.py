"""Requests a web browser could be made to send: refused before they reach a handler.

A page on another site can make a browser send a form or a "simple" fetch to the API
(CSRF) without asking first, and with `--insecure-local` no token stands in the way. So:

- A request that changes something (any method but GET and HEAD) from a browser page of
  another origin is refused (403): its `Origin` names another host and port than the
  request's own `Host` (or is `null`), or `Sec-Fetch-Site` says `cross-site` or `same-site`.
- Such a request carries its body as JSON or YAML, saying so in `Content-Type` (415
  otherwise); the types a browser sends without asking (forms, `text/plain`) are refused even
  with an empty body.
- With `loopback_only` (`--insecure-local`), only requests naming a loopback address or
  `localhost` in `Host` are answered (421 otherwise): a page whose name was pointed at
  127.0.0.1 (DNS rebinding) is same-origin for the browser, but names its own host.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from .auth import is_loopback
from .deps import JSON_TYPES, YAML_TYPES
from .errors import error_response

SAFE_METHODS = frozenset({"GET", "HEAD"})
BROWSER_TYPES = frozenset(
    {"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"}
)
"""What a page may send to another origin without a CORS preflight."""

DEFAULT_PORTS = {"http": "80", "https": "443"}


def authority(host: str, scheme: str) -> tuple[str, str] | None:
    """`host[:port]` as (lower-case host, port), the port filled in from `scheme`; None when
    it is not a host and port."""
    host = host.strip().lower()
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        name = f"[{name}]"
        port = rest.removeprefix(":") if rest.startswith(":") else rest
    else:
        name, _, port = host.partition(":")
    port = port or DEFAULT_PORTS.get(scheme, "")
    if not name or not port.isdigit() or not port.isascii():
        return None
    return name, port


def loopback_host(host: str | None, scheme: str) -> bool:
    """Whether a `Host` header names a loopback address or `localhost`."""
    found = authority(host or "", scheme)
    return found is not None and is_loopback(found[0])


def cross_origin(headers: Headers, scheme: str) -> bool:
    """Whether a browser says the request comes from a page of another origin."""
    if headers.get("sec-fetch-site", "").lower() in ("cross-site", "same-site"):
        return True
    origin = headers.get("origin")
    if origin is None:
        return False
    parts = urlsplit(origin.strip())
    if parts.scheme not in DEFAULT_PORTS or not parts.netloc:
        return True  # `null` (a sandboxed or file page) or nothing a browser sends
    return authority(parts.netloc, parts.scheme) != authority(headers.get("host", ""), scheme)


def body_type_problem(headers: Headers) -> str | None:
    """Why the Content-Type of a write is refused, None when it is fine."""
    media = headers.get("content-type", "").split(";")[0].strip().lower()
    length = headers.get("content-length", "")
    has_body = (length.isdigit() and int(length) > 0) or "transfer-encoding" in headers
    if media in BROWSER_TYPES:
        return f"Content-Type {media!r} is refused for changes"
    if has_body and not (media in JSON_TYPES or media in YAML_TYPES or media.endswith("+json")):
        given = repr(media) if media else "none"
        return f"a body needs a Content-Type of JSON or YAML (given: {given})"
    return None


class BrowserGuard:
    """Refuses what browsers may be tricked into sending (see the module's description)."""

    def __init__(self, app: ASGIApp, loopback_only: bool = False) -> None:
        self.app = app
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        scheme = str(scope.get("scheme", "http"))
        refusal = None
        if self.loopback_only and not loopback_host(headers.get("host"), scheme):
            refusal = error_response(
                421,
                "this server answers only requests for a loopback address or localhost "
                f"(--insecure-local), not Host {headers.get('host', '')!r}",
            )
        elif scope["method"] not in SAFE_METHODS:
            if cross_origin(headers, scheme):
                refusal = error_response(
                    403, "changes from a web page of another origin are refused"
                )
            elif (problem := body_type_problem(headers)) is not None:
                refusal = error_response(415, problem)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)
