"""The one place that turns errors into HTTP responses: `{success, code, message}`."""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from postbackd.errors import PostbackdError

log = logging.getLogger(__name__)


def json_response(body: dict, status: int = 200) -> Response:
    return Response(
        orjson.dumps(body, default=str), status_code=status, media_type="application/json"
    )


def error_response(exc: PostbackdError) -> Response:
    return json_response(exc.body(), exc.status)


def install(app: FastAPI) -> None:
    @app.exception_handler(PostbackdError)
    async def _known(_req: Request, exc: PostbackdError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError) -> Response:
        errors = [_describe(e) for e in exc.errors()]
        body = {
            "success": False,
            "code": "validation_error",
            "message": errors[0]["message"],
            "details": errors,
        }
        return json_response(body, 422)

    @app.exception_handler(HTTPException)
    async def _http(_req: Request, exc: HTTPException) -> Response:
        if exc.status_code == 400 and "parsing the body" in str(exc.detail):
            # FastAPI's answer to a body it cannot decode (bad UTF-8, absurd nesting).
            body = {
                "success": False,
                "code": "validation_error",
                "message": "body is not valid JSON",
            }
            return json_response(body, 422)
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}.get(
            exc.status_code, "http_error"
        )
        return json_response(
            {"success": False, "code": code, "message": str(exc.detail)}, exc.status_code
        )

    @app.exception_handler(Exception)
    async def _bug(_req: Request, exc: Exception) -> Response:
        log.exception("unhandled error")
        return json_response(
            {"success": False, "code": "internal_error", "message": "internal server error"}, 500
        )


def _describe(error: dict) -> dict:
    where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
    msg = error.get("msg", "invalid value")
    return {
        "field": where,
        "type": error.get("type"),
        "message": f"{where}: {msg}" if where else msg,
    }
