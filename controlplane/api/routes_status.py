"""The fleet: who runs which revision, waiting for a revision to be everywhere, metrics."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, Response

from ..fleet.records import ProxyRecord, WaitResult
from ..model import Config
from ..prometheus import CONTENT_TYPE, render
from .deps import context, reader
from .errors import not_found
from .responses import errors, json_at
from .writes import head_number

MAX_WAIT = 300.0


def router() -> APIRouter:
    """`/v1/status`, `/v1/status/wait` and `/metrics`."""
    api = APIRouter()
    read = [Depends(reader)]
    failures = errors(401, 403, 404, 422)

    @api.get(
        "/v1/status",
        dependencies=read,
        responses=failures,
        tags=["status"],
        operation_id="get_status",
    )
    async def status(request: Request) -> Response:
        """Every proxy: kind, group, the revision it runs, its last ACK or NACK, last seen;
        `held_back`: the groups whose new proxies are served their last-known-good revision
        while the group refuses the newest one."""
        ctx = context(request)
        head = await run_in_threadpool(ctx.store.head)
        proxies = await run_in_threadpool(ctx.status.proxies)
        number = head_number(head)
        return json_at(
            {
                "revision": number,
                "proxies": [_proxy_json(p, number) for p in proxies],
                "verification": ctx.verifier.last(),
                "held_back": ctx.held_back.held_back(),
            },
            number,
        )

    @api.post(
        "/v1/status:verify",
        dependencies=read,
        responses=errors(401, 403, 415),
        tags=["status"],
        operation_id="verify_status",
    )
    async def verify(request: Request) -> Response:
        """Compare what each proxy actually runs with the head: an Envoy's `/config_dump`
        (resources by type and name, their content and versions), a local HAProxy's bundle,
        servers and maps through its runtime API. `drifted` lists the proxies that differ;
        the result is kept and shown by `/v1/status` as `verification`."""
        ctx = context(request)
        head = await run_in_threadpool(ctx.store.head)
        config = head.config if head is not None else Config()
        result = await run_in_threadpool(ctx.verifier.verify, config, head_number(head) or None)
        return json_at(result, head_number(head))

    @api.get(
        "/v1/status/wait",
        dependencies=read,
        responses=failures,
        tags=["status"],
        operation_id="wait_status",
    )
    async def wait(
        request: Request,
        revision: Annotated[int | None, Query(ge=1, description="Default: the head.")] = None,
        timeout: Annotated[float, Query(ge=0, le=MAX_WAIT, description="Seconds.")] = 30.0,
    ) -> Response:
        """Answer when no connected proxy is still on its way to `revision` (each runs it, or
        newer, or refused it), or after `timeout` seconds; always 200, `converged` says
        whether all run it."""
        ctx = context(request)
        head = await run_in_threadpool(ctx.store.head)
        number = head_number(head)
        wanted = revision if revision is not None else number
        if wanted > number:
            raise not_found(f"revision {wanted}")
        began = time.monotonic()
        result = await ctx.status.wait(wanted, timeout)
        return json_at(_wait_json(result, time.monotonic() - began), number)

    @api.get(
        "/metrics",
        dependencies=read,
        responses=errors(401, 403),
        tags=["status"],
        response_class=PlainTextResponse,
        operation_id="metrics",
    )
    async def metrics(request: Request) -> Response:
        """Prometheus text exposition."""
        ctx = context(request)
        return Response(render([ctx.metrics, *ctx.metrics_sources]), media_type=CONTENT_TYPE)

    return api


def _proxy_json(proxy: ProxyRecord, head: int) -> dict[str, Any]:
    item = proxy.as_json()
    item["current"] = proxy.runs(head) if head else proxy.revision is not None
    return item


def _wait_json(result: WaitResult, waited: float) -> dict[str, Any]:
    return {
        "revision": result.revision,
        "converged": result.converged,
        "total": len(result.proxies),
        "acked": len(result.acked),
        "waited_seconds": round(waited, 3),
        "refused": [_lag(p, "refused") for p in result.refused],
        "pending": [_lag(p, "pending") for p in result.pending],
    }


def _lag(proxy: ProxyRecord, state: str) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": proxy.id,
        "kind": proxy.kind,
        "group": proxy.group,
        "revision": proxy.revision,
        "state": state,
    }
    if proxy.last_nack is not None:
        item["error"] = proxy.last_nack.error
        item["refused_revision"] = proxy.last_nack.revision
    return item
