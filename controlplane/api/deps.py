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

from ..model import ProxyKind
from ..prometheus import MetricsSource
from ..store import Store
from .auth import Authorizer, Principal, Scope, is_loopback
from .diff import DiffExplainer
from .errors import ApiError, bad_input
from .metrics import ApiMetrics
from .offload import offload
from .status import DriftVerifier, HeldBack, NothingHeldBack, NoVerifier, StatusSource
from .writes import ConfigWriter

log = logging.getLogger("controlplane.api")

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
JSON_TYPES = ("application/json", "application/merge-patch+json")

YamlLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's parser when PyYAML was built with it (several times faster), else PyYAML's own."""


@dataclass
class ApiContext:
    """The parts of a running API server."""

    store: Store
    writer: ConfigWriter
    status: StatusSource
    authorizer: Authorizer
    explainer: DiffExplainer
    targets: Sequence[ProxyKind]
    metrics: ApiMetrics
    metrics_sources: list[MetricsSource] = field(default_factory=list)
    verifier: DriftVerifier = field(default_factory=NoVerifier)
    held_back: HeldBack = field(default_factory=NothingHeldBack)


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

    Parsing is offloaded from the event loop (see `offload`). Bodies nested deeper than
    MAX_DEPTH or holding more than MAX_NODES values are refused."""
    raw = await request.body()
    media = request.headers.get("content-type", "application/json").split(";")[0]
    return await offload(parse_body, raw, media.strip().lower(), allow_yaml)


def parse_body(raw: bytes, media: str, allow_yaml: bool) -> Any:
    """`raw` parsed as the media type says (422 when malformed, 415 when not JSON or YAML)."""
    data = _parse(raw, media, allow_yaml)
    _check_shape(data)
    return data


def _check_shape(data: Any) -> None:
    """422 for a body nested deeper than MAX_DEPTH or holding more than MAX_NODES values
    (YAML aliases count each time they are used); one level at a time, never recursing."""
    level = [data] if isinstance(data, dict | list) else []
    nodes = 1
    depth = 0
    while level:
        below: list[Any] = []
        for node in level:
            children = node.values() if isinstance(node, dict) else node
            if not children:
                continue
            if depth >= MAX_DEPTH:
                raise bad_input(("body",), f"the body is nested more than {MAX_DEPTH} levels deep")
            nodes += len(children)
            if nodes > MAX_NODES:
                raise bad_input(("body",), f"the body holds more than {MAX_NODES} values")
            below += [child for child in children if isinstance(child, dict | list)]
        level = below
        depth += 1


def _parse(raw: bytes, media: str, allow_yaml: bool) -> Any:
    if allow_yaml and media in YAML_TYPES:
        try:
            return yaml.load(raw.decode("utf-8"), Loader=YamlLoader)
        except RecursionError:
            raise bad_input(("body",), "the body is nested too deeply") from None
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            where = getattr(exc, "problem_mark", None)
            at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
            problem = getattr(exc, "problem", None)
            why = f": {problem}" if problem else ""
            raise bad_input(("body",), f"the body is not valid YAML{at}{why}") from None
        except ValueError as exc:  # a value YAML reads but Python cannot hold
            raise bad_input(("body",), f"the body is not valid YAML: {_reason(exc)}") from None
    if media not in JSON_TYPES and not media.endswith("+json"):
        accepted = ", ".join((*JSON_TYPES, *(YAML_TYPES if allow_yaml else ())))
        raise ApiError(415, f"unsupported Content-Type {media!r}; use one of {accepted}")
    try:
        return json.loads(raw)
    except RecursionError:
        raise bad_input(("body",), "the body is nested too deeply") from None
    except json.JSONDecodeError as exc:
        where = f" at line {exc.lineno}, column {exc.colno}"
        raise bad_input(("body",), f"the body is not valid JSON{where}: {exc.msg}") from None
    except UnicodeDecodeError:
        raise bad_input(("body",), "the body is not valid JSON: not UTF-8") from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise bad_input(("body",), f"the body is not valid JSON: {_reason(exc)}") from None


def _reason(exc: ValueError) -> str:
    """What Python says about a value it cannot hold, without its advice to programmers."""
    return str(exc).split(";")[0]


def author_message(request: Request, default: str) -> tuple[str, str]:
    """Who made a write (the token's name) and why (`X-Change-Message`, else `default`)."""
    author = str(getattr(request.state, "principal", "unknown"))
    message = request.headers.get("x-change-message", "").strip() or default
    return author, message[:1000]
