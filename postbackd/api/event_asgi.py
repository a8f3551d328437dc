"""The event postback routes (seed 000) as a bare ASGI app: the requests that matter most.

`/api/event/global/{org_id}` and `/api/event/trigger`, as a GET query string or a JSON
POST, are answered here without Starlette's Request, route regexes, Response objects or
the middleware wrappers around them: with the writer stubbed out, that machinery was ~60
of the ~100 µs of Python each event cost the server process. Everything else on these
paths (form and multipart bodies, other methods, unknown paths) goes to the Starlette
route table as before, which answers it the same way. What is answered here follows the
same rules: the body limit (413 `body_too_large`), JSON errors, the seed's codes, and a
JSON 500 for a bug.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl

from postbackd.api.ingest import _json_object, fire, is_json_type
from postbackd.api.limits import declared_too_large, send_json
from postbackd.errors import InputError, PayloadTooLarge, PostbackdError

log = logging.getLogger(__name__)

GLOBAL = "/api/event/global/"
TRIGGER = "/api/event/trigger"


class EventRoutes:
    """`app(scope, receive, send)` for paths under /api/event/; `fallback` is the
    Starlette app that serves whatever this one does not."""

    def __init__(self, fallback, max_body_bytes: int):
        self.fallback = fallback
        self.max_bytes = max_body_bytes

    async def __call__(self, scope, receive, send):
        route = _route(scope["path"])
        method = scope["method"]
        ours = method == "GET" or (method == "POST" and is_json_type(_content_type(scope)))
        if route is None or not ours:
            return await self.fallback(scope, receive, send)
        org_id, require_cid = route
        try:
            status, body = await self._answer(scope, receive, method, org_id, require_cid)
        except Exception:
            log.exception("unhandled error in an event postback")
            status, body = 500, _INTERNAL
        await send_json(send, status, body)

    async def _answer(self, scope, receive, method: str, org_id, require_cid: bool):
        try:
            params = _query(scope["query_string"])
            if method == "POST" and (body := await self._body(scope, receive)).strip():
                params.update(_json_object(body))
        except PostbackdError as exc:
            return exc.status, exc.body()
        return await fire(scope["app"].state.services, params, org_id, require_cid)

    async def _body(self, scope, receive) -> bytes:
        if declared_too_large(scope["headers"], self.max_bytes):
            raise _too_large(self.max_bytes)
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                raise InputError("client_disconnected", "the client closed the request")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise _too_large(self.max_bytes)
            chunks.append(chunk)
            more = message.get("more_body", False)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _route(path: str) -> tuple[str | None, bool] | None:
    """(org_id, cid required) for the two event routes, None for any other path."""
    if path.startswith(GLOBAL):
        org_id = path[len(GLOBAL) :]
        return (org_id, False) if org_id and "/" not in org_id else None
    return (None, True) if path == TRIGGER else None


def _content_type(scope) -> str:
    """The media type, lower-cased, without parameters ("" when none is given)."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value.decode("latin-1").split(";", 1)[0].strip().lower()
    return ""


def _query(raw: bytes) -> dict[str, Any]:
    """As Starlette's `dict(request.query_params)`: the last of repeated names wins."""
    return dict(parse_qsl(raw.decode("latin-1"), keep_blank_values=True)) if raw else {}


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(message=f"request body exceeds {limit} bytes")


_INTERNAL = {"success": False, "code": "internal_error", "message": "internal server error"}
