"""Every error the API returns: a status and `{"error": ..., "issues": [...]}`."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..model import ConfigError, Issue, format_path
from .methods import allowed_methods

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An answer other than success: HTTP status, a sentence, and the issues behind it."""

    def __init__(
        self,
        status: int,
        error: str,
        issues: Iterable[dict[str, Any]] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.error = error
        self.issues = list(issues)
        self.headers = headers or {}
        super().__init__(error)


def issue_json(issue: Issue, proxy: str | None = None) -> dict[str, Any]:
    """An issue as the API shows it: the field's path in `format_path` form and the message."""
    item: dict[str, Any] = {"path": format_path(issue.path), "message": issue.message}
    if proxy is not None:
        item["proxy"] = proxy
    return item


def invalid(error: ConfigError, what: str = "the config is invalid") -> ApiError:
    """A 422 listing each problem of a refused config."""
    return ApiError(422, what, [issue_json(issue) for issue in error.issues])


def bad_input(path: Sequence[str | int], message: str, status: int = 422) -> ApiError:
    """A refused request with one problem at `path` (e.g. `("headers", "If-Match")`)."""
    return ApiError(status, message, [{"path": format_path(path), "message": message}])


def not_found(what: str) -> ApiError:
    """A 404 naming what does not exist."""
    return ApiError(404, f"{what} does not exist")


def _issue(error: Any) -> dict[str, Any]:
    """A FastAPI validation error as an issue; a body that is not JSON is one at `body`."""
    if error.get("type") == "json_invalid":
        why = error.get("ctx", {}).get("error")
        return {
            "path": "body",
            "message": "the body is not valid JSON" + (f": {why}" if why else ""),
        }
    path = format_path([str(p) if i == 0 else p for i, p in enumerate(error["loc"])])
    return {"path": path, "message": str(error["msg"])}


def error_response(
    status: int, error: str, issues: list[dict[str, Any]] | None = None, **headers: str
) -> JSONResponse:
    """The JSON body every error has."""
    return JSONResponse(
        {"error": error, "issues": issues or []}, status_code=status, headers=headers or None
    )


def install_error_handlers(app: FastAPI) -> None:
    """Answer every failure with the common error body, and never a 500 for bad input."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.error, exc.issues, **exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "the request is invalid", [_issue(e) for e in exc.errors()])

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return JSONResponse(
            {"error": str(exc.detail), "issues": []},
            status_code=exc.status_code,
            headers=headers or None,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal error; see the server log")
