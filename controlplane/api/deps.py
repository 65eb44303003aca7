"""What each request handler needs: the server's parts, the caller's identity, the body."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..model import Target
from ..store import Store
from .auth import Authorizer, Principal, Scope, is_loopback
from .diff import DiffExplainer
from .errors import ApiError, bad_input
from .metrics import ApiMetrics, MetricsSource
from .status import StatusSource
from .writes import ConfigWriter

log = logging.getLogger("controlplane.api")

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
JSON_TYPES = ("application/json", "application/merge-patch+json")


@dataclass
class ApiContext:
    """The parts of a running API server."""

    store: Store
    writer: ConfigWriter
    status: StatusSource
    authorizer: Authorizer
    explainer: DiffExplainer
    targets: Sequence[Target]
    metrics: ApiMetrics
    metrics_sources: list[MetricsSource] = field(default_factory=list)


def context(request: Request) -> ApiContext:
    """The server's parts."""
    ctx: ApiContext = request.app.state.context
    return ctx


_bearer = HTTPBearer(
    auto_error=False, description="A token with the `read`, `write` or `agent` scope."
)


PLAIN_HTTP = (
    "tokens are refused over plain HTTP except on loopback; reach the API over TLS "
    "(serve --api-tls-cert/--api-tls-key)"
)


def _over_plain_http_from_afar(request: Request) -> bool:
    """Whether the request came over plain HTTP on a connection that leaves this machine."""
    if request.url.scheme == "https":
        return False
    server, client = request.scope.get("server"), request.scope.get("client")
    return not (server and client and is_loopback(server[0]) and is_loopback(client[0]))


def authenticated(request: Request) -> Principal:
    """Who sends the request: 401 without a valid token (unless the server admits tokenless
    local requests); 403 for a token sent over plain HTTP from another machine."""
    authorizer = context(request).authorizer
    if request.headers.get("authorization") and _over_plain_http_from_afar(request):
        log.warning("refused %s %s: a token over plain HTTP", request.method, request.url.path)
        raise ApiError(403, PLAIN_HTTP)
    try:
        principal = authorizer.principal(request.headers.get("authorization"))
    except PermissionError as exc:
        log.warning("refused %s %s: %s", request.method, request.url.path, exc)
        raise ApiError(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from None
    if principal is None:
        principal = authorizer.local()
    if principal is None:
        raise ApiError(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    request.state.principal = principal.name
    return principal


def _refuse(request: Request, principal: Principal, needs: str) -> ApiError:
    log.warning(
        "refused %s %s to %s: needs %s", request.method, request.url.path, principal.name, needs
    )
    return ApiError(403, f"the token {principal.name!r} lacks {needs}")


def require(scope: Scope) -> Callable[..., Principal]:
    """A dependency admitting callers with `scope`: 401 without a valid token, 403 without
    the scope."""

    def dependency(
        request: Request,
        _credentials: HTTPAuthorizationCredentials | None = Security(_bearer),
    ) -> Principal:
        principal = authenticated(request)
        if scope not in principal.scopes:
            raise _refuse(request, principal, f"the {scope!r} scope")
        return principal

    return dependency


reader = require("read")
writer = require("write")


def agent(
    request: Request,
    _credentials: HTTPAuthorizationCredentials | None = Security(_bearer),
) -> Principal:
    """A dependency admitting the agents of the node group named by the path's `{group}`:
    the `agent` scope with that group (403 otherwise, for read and write tokens too)."""
    principal = authenticated(request)
    group = str(request.path_params.get("group", ""))
    if not principal.is_agent_of(group):
        raise _refuse(request, principal, f"the 'agent' scope for node group {group!r}")
    return principal


MAX_DEPTH = 32
MAX_NODES = 2_000_000
"""Bounds on a body's nesting and size once parsed (YAML aliases can multiply a small text)."""


async def read_body(request: Request, allow_yaml: bool = False) -> Any:
    """The request body as plain data: JSON, or YAML when allowed and the Content-Type says so.

    Bodies nested deeper than MAX_DEPTH or holding more than MAX_NODES values are refused."""
    data = await _parse_body(request, allow_yaml)
    _check_shape(data)
    return data


def _check_shape(data: Any) -> None:
    stack: list[tuple[Any, int]] = [(data, 0)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if depth > MAX_DEPTH:
            raise bad_input(("body",), f"the body is nested more than {MAX_DEPTH} levels deep")
        if nodes > MAX_NODES:
            raise bad_input(("body",), f"the body holds more than {MAX_NODES} values")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


async def _parse_body(request: Request, allow_yaml: bool) -> Any:
    raw = await request.body()
    content_type = request.headers.get("content-type", "application/json")
    media = content_type.split(";")[0].strip().lower()
    if allow_yaml and media in YAML_TYPES:
        try:
            return yaml.safe_load(raw.decode("utf-8"))
        except RecursionError:
            raise bad_input(("body",), "the body is nested too deeply") from None
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            where = getattr(exc, "problem_mark", None)
            at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
            raise bad_input(("body",), f"the body is not valid YAML{at}") from None
    if media not in JSON_TYPES and not media.endswith("+json"):
        accepted = ", ".join((*JSON_TYPES, *(YAML_TYPES if allow_yaml else ())))
        raise ApiError(415, f"unsupported Content-Type {media!r}; use one of {accepted}")
    try:
        return json.loads(raw)
    except RecursionError:
        raise bad_input(("body",), "the body is nested too deeply") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = (
            f" at line {exc.lineno}, column {exc.colno}"
            if isinstance(exc, json.JSONDecodeError)
            else ""
        )
        raise bad_input(("body",), f"the body is not valid JSON{where}") from None


def author_message(request: Request, default: str) -> tuple[str, str]:
    """Who made a write (the token's name) and why (`X-Change-Message`, else `default`)."""
    author = str(getattr(request.state, "principal", "unknown"))
    message = request.headers.get("x-change-message", "").strip() or default
    return author, message[:1000]
