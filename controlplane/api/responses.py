"""How successful answers look: JSON bodies carrying the revision as ETag."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse, Response

from ..model.tls import REDACT_KEYS
from ..model.types import Model


def etag(revision: int) -> str:
    """The ETag of everything read at a revision (0: the empty store)."""
    return f'"{revision}"'


def shown(obj: Model) -> dict[str, Any]:
    """An object as the API shows it: fields that keep their default left out (as in YAML),
    private keys redacted (see `controlplane.api.secrets`)."""
    return obj.model_dump(mode="json", exclude_defaults=True, context={REDACT_KEYS: True})


def json_at(
    body: Any, revision: int, status: int = 200, headers: dict[str, str] | None = None
) -> JSONResponse:
    """A JSON answer read at, or written as, `revision`."""
    return JSONResponse(
        body, status_code=status, headers={"ETag": etag(revision), **(headers or {})}
    )


def empty_at(revision: int) -> Response:
    """A 204 after a write that made `revision`."""
    return Response(status_code=204, headers={"ETag": etag(revision)})


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "issues"],
    "properties": {
        "error": {"type": "string"},
        "issues": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["path", "message"],
                "properties": {
                    "path": {"type": "string", "example": "clusters[0].endpoints[0].address"},
                    "message": {"type": "string"},
                    "proxy": {"type": "string", "enum": ["envoy", "haproxy"]},
                },
            },
        },
    },
}

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {"application/json": {"schema": ERROR_SCHEMA}}}
    for code, text in {
        401: "No valid bearer token",
        403: "The token lacks the scope, or a browser page of another origin asks for a change",
        404: "No such object or revision",
        409: "The name is taken, or the config kept changing under a write without If-Match",
        412: "If-Match names a revision that is no longer the head (the ETag is the head)",
        413: "The body is larger than the server's limit",
        415: "The body is neither JSON nor YAML, or a change is sent as a form or text",
        422: "Invalid input: each issue names the field's path",
    }.items()
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI descriptions of these error statuses."""
    return {code: ERRORS[code] for code in codes}


READ_ERRORS = errors(401, 403, 404, 422)
"""What a read can answer besides success."""
WRITE_ERRORS = errors(401, 403, 404, 409, 412, 413, 415, 422)
"""What a write with a body can answer besides success."""
BODILESS_WRITE_ERRORS = errors(401, 403, 404, 409, 412, 415, 422)
"""What a write without a body (delete, rollback) can answer besides success."""
DRY_RUN_ERRORS = errors(401, 403, 413, 415, 422)
"""What a dry run can answer besides success."""
