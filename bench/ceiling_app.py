"""The ceiling: a bare ASGI app (no framework) that reads the body and answers 200 JSON.

Served by uvicorn (uvloop + httptools), one worker process, exactly like `postbackd serve`;
whatever postbackd does per request on top of this is what the ratio measures.
"""

from __future__ import annotations

BODY = b'{"success":true,"code":"tracking_event_fired","message":"ok"}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
