"""The outermost ASGI app: inbound routes go straight to a bare Starlette router.

The admin API is a FastAPI app with its middleware stack and some fifty routes to match;
the inbound postback, click and lead routes are where requests per second matter, so
they skip all of that. Everything else (admin API, docs, lifespan) goes to FastAPI.
"""

from __future__ import annotations

import logging

from starlette.routing import Route, Router

from postbackd.api import ingest
from postbackd.api.errors import json_response
from postbackd.api.limits import BodyLimit

log = logging.getLogger(__name__)

INGEST_ROUTES = [
    Route("/api/event/global/{org_id}", ingest.event_global, methods=["GET", "POST"]),
    Route("/api/event/trigger", ingest.event_trigger, methods=["GET", "POST"]),
    Route("/api/leads", ingest.lead_form, methods=["POST"]),
    Route("/c/{cid}", ingest.click, methods=["GET"]),
]
PREFIXES = ("/api/event/", "/api/leads", "/c/")


class Front:
    def __init__(self, app, max_body_bytes: int):
        self.app = app
        self.ingest = BodyLimit(_CatchAll(Router(routes=INGEST_ROUTES)), max_body_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith(PREFIXES):
            scope["app"] = self.app  # handlers find the services on app.state
            return await self.ingest(scope, receive, send)
        return await self.app(scope, receive, send)

    def __getattr__(self, name):
        return getattr(self.app, name)  # state, openapi(), routes … of the FastAPI app


class _CatchAll:
    """A bug in an inbound handler still answers JSON 500, like the admin API does."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        started = False

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error in an inbound route")
            if not started:
                body = {
                    "success": False,
                    "code": "internal_error",
                    "message": "internal server error",
                }
                await json_response(body, 500)(scope, receive, send)
