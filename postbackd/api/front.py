"""The outermost ASGI app: inbound routes go straight to a bare Starlette router.

The admin API is a FastAPI app with its middleware stack and some fifty routes to match;
the inbound postback, click and lead routes are where requests per second matter, so
they skip all of that. Everything else (admin API, docs, lifespan) goes to FastAPI.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.routing import Match, Route

from postbackd.api import ingest
from postbackd.api.errors import error_response, json_response
from postbackd.api.event_asgi import EventRoutes
from postbackd.api.limits import BodyLimit
from postbackd.errors import MethodNotAllowed, NotFound

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
        self.ingest = BodyLimit(_CatchAll(_Direct(INGEST_ROUTES)), max_body_bytes)
        self.events = EventRoutes(self.ingest, max_body_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith(PREFIXES):
            scope["app"] = self.app  # handlers find the services on app.state
            if scope["path"].startswith("/api/event/"):
                return await self.events(scope, receive, send)
            return await self.ingest(scope, receive, send)
        return await self.app(scope, receive, send)

    def __getattr__(self, name):
        return getattr(self.app, name)  # state, openapi(), routes … of the FastAPI app


class _Direct:
    """Call the matching endpoint straight away; Starlette's router and per-route wrappers
    (lifespan and slash checks, exception-handler lookup with no handlers registered) cost
    about a third of the event loop's time per event. An unknown path answers 404
    `not_found`, a known one with the wrong method 405 `method_not_allowed`, in our JSON."""

    def __init__(self, routes: list[Route]):
        self.routes = routes

    async def __call__(self, scope, receive, send):
        allowed: set[str] = set()
        for route in self.routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                scope.update(child)
                response = await route.endpoint(Request(scope, receive, send))
                return await response(scope, receive, send)
            if match is Match.PARTIAL:
                allowed |= route.methods or set()
        if allowed:
            response = error_response(
                MethodNotAllowed("method_not_allowed", f"use {', '.join(sorted(allowed))}")
            )
            response.headers["Allow"] = ", ".join(sorted(allowed))
        else:
            response = error_response(NotFound("not_found", f"no route {scope['path']!r}"))
        await response(scope, receive, send)


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
