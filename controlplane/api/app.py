"""The REST API server: `create_app` assembles it from a store and the seams to the fleet."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..model import PROXY_KINDS, Config, ProxyKind
from ..prometheus import MetricsSource
from ..store import Store
from . import routes_config, routes_explain, routes_objects, routes_status
from .auth import Authorizer, TokenSet
from .deps import ApiContext, agent
from .diff import DiffExplainer, ModelOnly
from .errors import install_error_handlers
from .limits import DEFAULT_MAX_BODY_BYTES, install_body_limit
from .methods import HeadAsGet
from .metrics import ApiMetrics
from .origin import BrowserGuard
from .propagation import NullPropagator, Propagator, follow
from .responses import errors
from .safeguards import connected_by_group
from .status import (
    DriftVerifier,
    HeldBack,
    InMemoryStatus,
    NothingHeldBack,
    NoVerifier,
    StatusSource,
)

DESCRIPTION = """\
One declarative load-balancing config, served to Envoy (xDS) and HAProxy.

- Every write validates the whole resulting config and makes a new revision, or changes
  nothing and answers 422 with each problem's path.
- Reads carry `ETag: "<revision>"`. A write with `If-Match: "<revision>"` is refused with
  412 when the head has moved on; a write without If-Match applies to the current head
  (last writer wins).
- `Authorization: Bearer <token>`: `read` scope for GET and dry runs, `write` for changes,
  `agent` (bound to node groups) for the HAProxy agents' bundle feed of those groups.
- Changes carry JSON or YAML bodies (`Content-Type`); browser pages of other origins may not
  make them (403); bodies over the server's limit are refused (413). A server run with
  `--insecure-local` answers only loopback `Host` names (421).
- Errors: `{"error": "...", "issues": [{"path": "...", "message": "..."}]}`.
"""


def create_app(
    store: Store,
    propagator: Propagator | None = None,
    status: StatusSource | None = None,
    tokens: TokenSet | None = None,
    targets: Sequence[ProxyKind] = PROXY_KINDS,
    insecure_local: bool = False,
    explainer: DiffExplainer | None = None,
    metrics_sources: Sequence[MetricsSource] = (),
    agents: Sequence[APIRouter] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    verifier: DriftVerifier | None = None,
    held_back: HeldBack | None = None,
) -> FastAPI:
    """The API over `store`.

    `propagator` receives every new head revision while the app runs (and the head at
    start); `status` answers /v1/status; `targets` are the proxy kinds served, whose limits
    every write is checked against; `insecure_local` admits requests without a token (the
    caller binds loopback only; only loopback `Host` names are answered); `explainer` adds
    per-proxy detail to dry runs; `metrics_sources` add families to /metrics; `agents` are
    more routers served under /v1 to the agents of the node group their path names as
    `{group}` (the HAProxy agents' bundle endpoints): tokens with the `agent` scope for that
    group, and no others; `max_body_bytes` is the largest request body read (413 above it);
    `verifier` compares what each proxy runs with the head (`POST /v1/status:verify`);
    `held_back` names the groups served their last-known-good (in `/v1/status`).
    """
    from .writes import ConfigWriter

    fleet = status if status is not None else InMemoryStatus()
    ctx = ApiContext(
        store=store,
        writer=ConfigWriter(store, targets, lambda: connected_by_group(fleet.proxies())),
        status=fleet,
        authorizer=Authorizer(tokens or TokenSet(), insecure_local),
        explainer=explainer or ModelOnly(),
        targets=tuple(targets),
        metrics=ApiMetrics(),
        metrics_sources=list(metrics_sources),
        verifier=verifier or NoVerifier(),
        held_back=held_back or NothingHeldBack(),
    )
    publisher = propagator or NullPropagator()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = follow(store, publisher)
        try:
            yield
        finally:
            stop()

    app = FastAPI(
        title="controlplane",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.context = ctx
    install_error_handlers(app)
    app.include_router(routes_config.router())
    app.include_router(routes_objects.router())
    app.include_router(routes_status.router())
    app.include_router(routes_explain.router())
    for extra in agents:
        app.include_router(
            extra, prefix="/v1", dependencies=[Depends(agent)], responses=errors(401, 403)
        )
    install_body_limit(app, max_body_bytes)
    app.add_middleware(HeadAsGet)
    app.add_middleware(BrowserGuard, loopback_only=insecure_local)
    app.add_middleware(RequestMetrics, metrics=ctx.metrics)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


class RequestMetrics:
    """Counts each request and its latency by method, route template and status."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = [500]

        async def record_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "(unmatched)"
            self.metrics.observe(scope["method"], template, status[0], time.perf_counter() - began)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the config model's schemas, which request bodies refer to."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    model = Config.model_json_schema(ref_template="#/components/schemas/{model}")
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(model.pop("$defs", {}))
    components["Config"] = model
    app.openapi_schema = schema
    return schema
