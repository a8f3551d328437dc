"""Request limits for every route, as ASGI middleware: body size (413 `body_too_large`) and
NUL characters in admin URLs (PostgreSQL text cannot hold them)."""

from __future__ import annotations

import contextlib

import orjson

from postbackd.errors import PayloadTooLarge


class BodyLimit:
    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope["path"].startswith("/api/v1/") and (nul := _nul_in_url(scope)):
            # Admin routes: no id contains NUL (404), no filter value may (422). Inbound
            # routes answer with the seed's per-parameter codes themselves.
            status, code = (404, "not_found") if nul == "path" else (422, "validation_error")
            return await self._send(send, status, code, f"the URL {nul} contains a NUL character")
        if declared_too_large(scope["headers"], self.max_bytes):
            return await self._reject(send)
        seen = 0
        exceeded = False

        async def counting_receive():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                nonlocal exceeded
                exceeded = True
                raise PayloadTooLarge(message=f"request body exceeds {self.max_bytes} bytes")
            return message

        async def guarded_send(message):
            if not exceeded:  # a body parser may turn our exception into its own answer
                await send(message)

        with contextlib.suppress(PayloadTooLarge):
            await self.app(scope, counting_receive, guarded_send)
        if exceeded:
            await self._reject(send)

    async def _reject(self, send):
        await self._send(
            send, 413, "body_too_large", f"request body exceeds {self.max_bytes} bytes"
        )

    async def _send(self, send, status: int, code: str, message: str):
        await send_json(send, status, {"success": False, "code": code, "message": message})


def declared_too_large(headers, max_bytes: int) -> bool:
    """A content-length over the limit, or one that is not a number."""
    for name, value in headers:
        if name == b"content-length":
            return not value.isdigit() or int(value) > max_bytes
    return False


async def send_json(send, status: int, body: dict) -> None:
    """A JSON answer as two bare ASGI messages (no Response object)."""
    data = orjson.dumps(body, default=str)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def _nul_in_url(scope) -> str | None:
    if "\x00" in scope["path"]:
        return "path"
    if b"%00" in scope.get("query_string", b""):
        return "query"
    return None
