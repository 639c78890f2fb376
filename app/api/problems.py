"""RFC 9457 problem details for every failure, each with the contract's `code`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match

from app.errors import HTTP_STATUS, TITLES, ChatError, ErrorCode
from app.infra.failures import STORE_DOWN, store_down
from app.serialization import dumps

log = structlog.get_logger(__name__)

MEDIA_TYPE = "application/problem+json"
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


class Problem(BaseModel):
    """RFC 9457 problem details with the service's error `code`."""

    type: str
    title: str
    status: int
    detail: str
    code: ErrorCode


def problem(
    code: ErrorCode,
    detail: str,
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> Response:
    status = status or HTTP_STATUS[code]
    body = {
        "type": f"urn:chat:problem:{code.value.lower().replace('_', '-')}",
        "title": TITLES[code],
        "status": status,
        "detail": detail,
        "code": code.value,
        **extra,
    }
    headers = dict(headers or {})
    if code in (ErrorCode.UNAVAILABLE, ErrorCode.RATE_LIMITED):
        headers["Retry-After"] = "1"
    return Response(dumps(body), status_code=status, media_type=MEDIA_TYPE, headers=headers)


def responses(*codes: ErrorCode) -> dict[int | str, dict[str, Any]]:
    """OpenAPI error responses for a route: always 401 and 503, plus what it adds."""
    documented: dict[int | str, dict[str, Any]] = {}
    for code in (ErrorCode.UNAUTHORIZED, *codes, ErrorCode.UNAVAILABLE):
        status = HTTP_STATUS[code]
        entry = documented.setdefault(
            status,
            # The schema under the problem media type too, so clients (and schema checks)
            # know the shape of an error body, not just its media type.
            {"model": Problem, "content": {MEDIA_TYPE: {"schema": PROBLEM_REF}}, "description": ""},
        )
        entry["description"] = " or ".join(filter(None, [entry["description"], code.value]))
    return documented


async def _chat_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ChatError)
    return problem(exc.code, exc.message, **exc.extra)


async def _validation(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type")}
        for e in exc.errors()
    ]
    return problem(ErrorCode.VALIDATION_FAILED, "the request is not valid", errors=errors)


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE and isinstance(route, BaseRoute):
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = exc.headers
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": _allowed_methods(request)}
    if exc.status_code == 400:
        # FastAPI's "error parsing the body" (a body that is not UTF-8, say): as invalid as
        # malformed JSON, so the same VALIDATION_FAILED with its status, 422.
        return problem(ErrorCode.VALIDATION_FAILED, str(exc.detail))
    code = {401: ErrorCode.UNAUTHORIZED, 403: ErrorCode.FORBIDDEN, 413: ErrorCode.PAYLOAD_TOO_LARGE}
    return problem(
        code.get(exc.status_code, ErrorCode.VALIDATION_FAILED),
        str(exc.detail),
        status=exc.status_code,
        headers=headers,  # e.g. `Allow` on a 405, which RFC 9110 requires
    )


async def _store_down(request: Request, exc: Exception) -> Response:
    log.warning("store_unavailable", error=type(exc).__name__, path=request.url.path)
    return problem(ErrorCode.UNAVAILABLE, "a data store is unreachable; nothing was stored")


async def _unexpected(request: Request, exc: Exception) -> Response:
    if store_down(exc):
        return await _store_down(request, exc)
    log.exception("unhandled_error", path=request.url.path)
    return problem(ErrorCode.INTERNAL, "an unexpected error occurred")


def install(app: FastAPI) -> None:
    app.add_exception_handler(ChatError, _chat_error)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
    for exc_type in STORE_DOWN:
        app.add_exception_handler(exc_type, _store_down)
    app.add_exception_handler(Exception, _unexpected)
