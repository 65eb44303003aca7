"""The whole config: read it at any revision, replace it, dry-run a change, list revisions,
roll back."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response

from ..model import Config, dump_yaml
from ..store import Revision, RevisionMeta, RevisionNotFound
from .deps import YAML_TYPES, ApiContext, author_message, context, read_body, reader, writer
from .diff import model_diff
from .errors import not_found
from .offload import offload
from .responses import (
    BODILESS_WRITE_ERRORS,
    DRY_RUN_ERRORS,
    READ_ERRORS,
    WRITE_ERRORS,
    etag,
    json_at,
    shown,
)
from .safeguards import allow_empty_groups_query
from .secrets import restore_keys
from .writes import Precondition, head_number, need_config, plain

CONFIG_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Config"}},
            "application/yaml": {"schema": {"$ref": "#/components/schemas/Config"}},
        },
    }
}


def router() -> APIRouter:
    """The config and revision endpoints under /v1."""
    api = APIRouter(prefix="/v1", tags=["config"])
    read = [Depends(reader)]
    write = [Depends(writer)]

    @api.get("/config", dependencies=read, responses=READ_ERRORS, operation_id="get_config")
    async def get_config(
        request: Request,
        revision: Annotated[int | None, Query(ge=1, description="Default: the head.")] = None,
    ) -> Response:
        """The whole config at a revision: JSON, or YAML with `Accept: application/yaml`.

        An empty store answers an empty config with ETag "0"."""
        ctx = context(request)
        found = await offload(_revision, ctx.store, revision)
        as_yaml = any(t in request.headers.get("accept", "") for t in YAML_TYPES)
        return await offload(_config_response, found, as_yaml)

    @api.put(
        "/config",
        dependencies=write,
        responses=WRITE_ERRORS,
        openapi_extra=CONFIG_BODY,
        operation_id="put_config",
    )
    async def put_config(
        request: Request, allow_empty_groups: bool = allow_empty_groups_query()
    ) -> Response:
        """Replace the whole config (JSON or YAML by Content-Type). 200 with the new ETag;
        the ETag stays when the config equals the head (no new revision)."""
        ctx = context(request)
        body = need_config(await read_body(request, allow_yaml=True))
        precondition = Precondition.parse(request.headers.get("if-match"))
        author, message = author_message(request, "replace the config")

        def change(data: dict[str, Any]) -> None:
            data.clear()
            data.update(body)  # validation reads the body, it never changes it

        result = await offload(
            ctx.writer.write, change, precondition, author, message, allow_empty_groups
        )
        return json_at({"revision": result.revision, "changed": result.changed}, result.revision)

    @api.post(
        "/config:validate",
        dependencies=read,
        responses=DRY_RUN_ERRORS,
        openapi_extra=CONFIG_BODY,
        operation_id="validate_config",
    )
    async def validate_config(
        request: Request, allow_empty_groups: bool = allow_empty_groups_query()
    ) -> Response:
        """Dry run of `PUT /v1/config`: 422 with the issues, or what the change would do."""
        ctx = context(request)
        body = await read_body(request, allow_yaml=True)
        head = await offload(ctx.store.head)
        return await offload(_dry_run, ctx, head, body, allow_empty_groups)

    @api.get("/revisions", dependencies=read, responses=READ_ERRORS, operation_id="list_revisions")
    async def list_revisions(
        request: Request,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        before: Annotated[
            int | None, Query(ge=1, description="Only revisions older than this.")
        ] = None,
    ) -> Response:
        """Revisions, newest first (no configs: read one with `GET /v1/config?revision=N`)."""
        ctx = context(request)
        head = await offload(ctx.store.head)
        metas = await offload(ctx.store.list, limit, before)
        return json_at([_meta_json(m) for m in metas], head_number(head))

    @api.get(
        "/revisions/{n:int}",  # digits only: `/revisions/3:rollback` is another route
        dependencies=read,
        responses=READ_ERRORS,
        operation_id="get_revision",
    )
    async def get_revision(request: Request, n: Annotated[int, Path(ge=1)]) -> Response:
        """One revision's author, time, message and content hash."""
        ctx = context(request)
        found = await offload(_revision, ctx.store, n)
        assert found is not None
        return json_at(_meta_json(found.meta), n)

    @api.post(
        "/revisions/{n}:rollback",
        dependencies=write,
        responses=BODILESS_WRITE_ERRORS,
        operation_id="rollback",
    )
    async def rollback(
        request: Request,
        n: Annotated[int, Path(ge=1)],
        allow_empty_groups: bool = allow_empty_groups_query(),
    ) -> Response:
        """Make a new revision whose config equals revision `n` (validated again, as any write)."""
        ctx = context(request)
        precondition = Precondition.parse(request.headers.get("if-match"))
        author, message = author_message(request, f"rollback to revision {n}")
        old = await offload(_revision, ctx.store, n)
        assert old is not None
        target = plain(old.config)

        def change(data: dict[str, Any]) -> None:
            data.clear()
            data.update(target)

        result = await offload(
            ctx.writer.write, change, precondition, author, message, allow_empty_groups
        )
        return json_at(
            {"revision": result.revision, "changed": result.changed, "rolled_back_to": n},
            result.revision,
        )

    return api


def _config_response(found: Revision | None, as_yaml: bool) -> Response:
    config = found.config if found else Config()
    number = head_number(found)
    if as_yaml:
        return Response(
            dump_yaml(config, redact_keys=True),
            media_type="application/yaml",
            headers={"ETag": etag(number)},
        )
    return json_at(shown(config), number)


def _dry_run(
    ctx: ApiContext, head: Revision | None, body: Any, allow_empty_groups: bool
) -> Response:
    old = head.config if head else None
    restore_keys(body, old)
    config = ctx.writer.check(body, old)
    ctx.writer.guard(old, config, allow_empty_groups)
    return json_at(
        {
            "valid": True,
            "revision": head_number(head),
            "changes": [c.as_json() for c in model_diff(old, config)],
            "proxies": ctx.explainer.explain(old, config),
        },
        head_number(head),
    )


def _revision(store: Any, number: int | None) -> Revision | None:
    if number is None:
        head: Revision | None = store.head()
        return head
    try:
        found: Revision = store.get(number)
    except RevisionNotFound:
        raise not_found(f"revision {number}") from None
    return found


def _meta_json(meta: RevisionMeta) -> dict[str, Any]:
    return {
        "revision": meta.number,
        "created_at": meta.created_at.isoformat(),
        "author": meta.author,
        "message": meta.message,
        "content_hash": meta.content_hash,
    }
