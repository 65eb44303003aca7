"""List, get, create, replace, patch and delete listeners, virtual hosts, routes, clusters
and node groups; each write validates the whole resulting config."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response

from ..model import Config
from ..store import Revision
from . import objects
from .deps import author_message, context, read_body, reader, writer
from .objects import KINDS, Kind, PathPart, at, locate
from .offload import offload
from .responses import BODILESS_WRITE_ERRORS, WRITE_ERRORS, empty_at, errors, json_at, shown
from .safeguards import allow_empty_groups_query
from .writes import Precondition, head_number, plain

Handler = Callable[..., Awaitable[Response]]


def router() -> APIRouter:
    """The object endpoints under /v1."""
    api = APIRouter(prefix="/v1")
    for kind in KINDS:
        _add_kind(api, kind)
    return api


def _listed(head: Revision | None, kind: Kind, parents: tuple[str, ...]) -> Response:
    config = head.config if head else Config()
    where = locate(plain(config), kind, parents)
    return json_at([shown(obj) for obj in at(config, where.path)], head_number(head))


def _got(head: Revision | None, kind: Kind, parents: tuple[str, ...], key: str) -> Response:
    config = head.config if head else Config()
    data = plain(config)
    _, index = objects.get(data, kind, parents, key)
    return json_at(shown(at(config, (*locate(data, kind, parents).path, index))), head_number(head))


def _collection_url(kind: Kind) -> str:
    url = ""
    for level in kind.chain[:-1]:
        url += f"/{level.field}/{{{level.name}}}"
    return f"{url}/{kind.field}"


def _parents(kind: Kind, params: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(params[level.name]) for level in kind.chain[:-1])


def _address(kind: Kind, params: dict[str, Any]) -> str:
    return "/".join(str(params[level.name]) for level in kind.chain)


def _with_path_params(
    handler: Handler, names: list[str], extra: list[inspect.Parameter]
) -> Handler:
    """Give a generic handler the signature FastAPI reads: one path parameter per name."""
    params = [
        inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request)
    ]
    params += [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            annotation=str,
            default=Path(
                description=f"The {name.replace('_', ' ')}'s name"
                + (" (or `@N`: the route at position N)" if name == "route" else "")
            ),
        )
        for name in names
    ]
    handler.__signature__ = inspect.Signature([*params, *extra])  # type: ignore[attr-defined]
    return handler


def _body_schema(kind: Kind, patch: bool = False) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{kind.model.__name__}"}
    schema = {"type": "object", "description": "A JSON merge patch (RFC 7386)"} if patch else ref
    media = "application/merge-patch+json" if patch else "application/json"
    return {"requestBody": {"required": True, "content": {media: {"schema": schema}}}}


def _add_kind(api: APIRouter, kind: Kind) -> None:
    collection = _collection_url(kind)
    item = f"{collection}/{{{kind.name}}}"
    parent_names = [level.name for level in kind.chain[:-1]]
    item_names = [*parent_names, kind.name]
    label = kind.label
    tags: list[str | Enum] = [kind.field]
    position = inspect.Parameter(
        "position",
        inspect.Parameter.KEYWORD_ONLY,
        annotation=int | None,
        default=Query(None, ge=0, description="Insert at this position (default: last)."),
    )
    allow_empty = inspect.Parameter(
        "allow_empty_groups",
        inspect.Parameter.KEYWORD_ONLY,
        annotation=bool,
        default=allow_empty_groups_query(),
    )

    async def list_(request: Request, **params: Any) -> Response:
        ctx = context(request)
        head = await offload(ctx.store.head)
        return await offload(_listed, head, kind, _parents(kind, params))

    async def get(request: Request, **params: Any) -> Response:
        ctx = context(request)
        head = await offload(ctx.store.head)
        return await offload(_got, head, kind, _parents(kind, params), params[kind.name])

    async def write(
        request: Request,
        change: Callable[[dict[str, Any]], tuple[PathPart, ...] | None],
        message: str,
        allow_empty_groups: bool,
        status: int = 200,
    ) -> Response:
        ctx = context(request)
        precondition = Precondition.parse(request.headers.get("if-match"))
        author, message = author_message(request, message)
        where: list[tuple[PathPart, ...] | None] = [None]

        def apply(data: dict[str, Any]) -> None:
            where[0] = change(data)

        result = await offload(
            ctx.writer.write, apply, precondition, author, message, allow_empty_groups
        )
        path = where[0]
        if path is None:
            return empty_at(result.revision)
        obj = shown(at(result.config, path))
        headers = {}
        if status == 201:
            key = obj.get("name") or f"@{path[-1]}"
            headers["Location"] = str(request.url.path).rstrip("/") + f"/{key}"
        return json_at(obj, result.revision, status, headers)

    async def create(request: Request, **params: Any) -> Response:
        body = await read_body(request)
        parents = _parents(kind, params)

        def change(data: dict[str, Any]) -> tuple[PathPart, ...]:
            index = objects.create(data, kind, parents, copy.deepcopy(body), params.get("position"))
            return (*locate(data, kind, parents).path, index)

        name = body.get("name") if isinstance(body, dict) else None
        address = "/".join([*parents, str(name or "(unnamed)")])
        allow = params["allow_empty_groups"]
        return await write(request, change, f"create {label} {address}", allow, 201)

    async def replace(request: Request, **params: Any) -> Response:
        body = await read_body(request)
        parents = _parents(kind, params)

        def change(data: dict[str, Any]) -> tuple[PathPart, ...]:
            index = objects.replace(data, kind, parents, params[kind.name], copy.deepcopy(body))
            return (*locate(data, kind, parents).path, index)

        message = f"replace {label} {_address(kind, params)}"
        return await write(request, change, message, params["allow_empty_groups"])

    async def patch(request: Request, **params: Any) -> Response:
        body = await read_body(request)
        parents = _parents(kind, params)

        def change(data: dict[str, Any]) -> tuple[PathPart, ...]:
            index = objects.patch(data, kind, parents, params[kind.name], copy.deepcopy(body))
            return (*locate(data, kind, parents).path, index)

        message = f"patch {label} {_address(kind, params)}"
        return await write(request, change, message, params["allow_empty_groups"])

    async def delete(request: Request, **params: Any) -> Response:
        parents = _parents(kind, params)

        def change(data: dict[str, Any]) -> None:
            objects.delete(data, kind, parents, params[kind.name])

        message = f"delete {label} {_address(kind, params)}"
        return await write(request, change, message, params["allow_empty_groups"])

    read = [Depends(reader)]
    write_ = [Depends(writer)]
    responses = errors(401, 403, 404)
    api.add_api_route(
        collection,
        _with_path_params(list_, parent_names, []),
        methods=["GET"],
        dependencies=read,
        responses=responses,
        tags=tags,
        summary=f"List {kind.field}",
        operation_id=f"list_{kind.field}",
    )
    api.add_api_route(
        collection,
        _with_path_params(create, parent_names, [position, allow_empty]),
        methods=["POST"],
        dependencies=write_,
        responses=WRITE_ERRORS,
        tags=tags,
        status_code=201,
        summary=f"Create a {label}",
        operation_id=f"create_{kind.name}",
        openapi_extra=_body_schema(kind),
    )
    api.add_api_route(
        item,
        _with_path_params(get, item_names, []),
        methods=["GET"],
        dependencies=read,
        responses=responses,
        tags=tags,
        summary=f"Get a {label}",
        operation_id=f"get_{kind.name}",
    )
    api.add_api_route(
        item,
        _with_path_params(replace, item_names, [allow_empty]),
        methods=["PUT"],
        dependencies=write_,
        responses=WRITE_ERRORS,
        tags=tags,
        summary=f"Replace a {label}",
        operation_id=f"replace_{kind.name}",
        openapi_extra=_body_schema(kind),
    )
    api.add_api_route(
        item,
        _with_path_params(patch, item_names, [allow_empty]),
        methods=["PATCH"],
        dependencies=write_,
        responses=WRITE_ERRORS,
        tags=tags,
        summary=f"Patch a {label} (JSON merge patch)",
        operation_id=f"patch_{kind.name}",
        openapi_extra=_body_schema(kind, patch=True),
    )
    api.add_api_route(
        item,
        _with_path_params(delete, item_names, [allow_empty]),
        methods=["DELETE"],
        dependencies=write_,
        responses=BODILESS_WRITE_ERRORS,
        tags=tags,
        status_code=204,
        summary=f"Delete a {label}",
        operation_id=f"delete_{kind.name}",
    )
