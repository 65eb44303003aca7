"""`POST /v1/explain`: which way a request would go, at the head or at any revision."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from ..explain import explain
from ..model import Config, ConfigError
from ..model.decision import Request as ExplainedRequest
from ..model.decision import parse_request
from ..store import Revision, RevisionNotFound
from .deps import ApiContext, context, read_body, reader
from .errors import invalid, not_found
from .offload import offload
from .responses import errors, json_at
from .writes import head_number

EXPLAIN_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": ExplainedRequest.model_json_schema()},
            "application/yaml": {"schema": ExplainedRequest.model_json_schema()},
        },
    }
}


def router() -> APIRouter:
    """`/v1/explain`."""
    api = APIRouter(prefix="/v1", tags=["explain"])

    @api.post(
        "/explain",
        dependencies=[Depends(reader)],
        responses=errors(401, 403, 404, 413, 415, 422),
        openapi_extra=EXPLAIN_BODY,
        operation_id="explain_request",
    )
    async def explain_request(
        request: Request,
        revision: Annotated[int | None, Query(ge=1, description="Default: the head.")] = None,
    ) -> Response:
        """The decision for a request as the model defines it (listener, TLS, virtual host,
        route and the candidates it beat, action, policies) with the names each served proxy
        gives its parts; 422 for a request that is not one, or names no listener."""
        ctx = context(request)
        body = await read_body(request, allow_yaml=True)
        return await offload(_explain, ctx, body, revision)

    return api


def _explain(ctx: ApiContext, body: Any, revision: int | None) -> Response:
    try:
        wanted = parse_request(body)
    except ConfigError as exc:
        raise invalid(exc, "the request to explain is invalid") from None
    found = _at(ctx, revision)
    config = found.config if found is not None else Config()
    try:
        decision = explain(config, wanted, ctx.targets)
    except ConfigError as exc:
        raise invalid(exc, "the request to explain is invalid") from None
    number = head_number(found)
    return json_at({"revision": number, **decision.as_json()}, number)


def _at(ctx: ApiContext, revision: int | None) -> Revision | None:
    if revision is None:
        head: Revision | None = ctx.store.head()
        return head
    try:
        return ctx.store.get(revision)
    except RevisionNotFound:
        raise not_found(f"revision {revision}") from None
