"""The app factory: one FastAPI app; ingest routes are plain Starlette routes inside it."""

from __future__ import annotations

import contextlib
import logging

import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from postbackd import __version__
from postbackd.api import admin_data, admin_postbacks, admin_setup, errors, front, openapi_ingest
from postbackd.api.limits import BodyLimit
from postbackd.api.services import Services
from postbackd.delivery import worker
from postbackd.runtime import settle_heap
from postbackd.settings import Settings
from postbackd.store.engine import make_engine, migrate
from postbackd.store.writer import Writer
from postbackd.store.writer_process import ProcessWriter

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    engine: sa.Engine | None = None,
    *,
    run_migrations: bool = True,
    writer_process: bool = False,
) -> front.Front:
    """`writer_process`: the group-commit writer runs in a child process (`serve` asks for
    it per `settings.writer_process`; apps built in tests keep it in a thread)."""
    engine = engine or make_engine(settings.database_url, synchronous=settings.sqlite_synchronous)
    threads = settings.writer_threads or (1 if engine.dialect.name == "sqlite" else 4)
    if writer_process:
        writer = ProcessWriter(
            engine,
            synchronous=settings.sqlite_synchronous,
            threads=threads,
            server_sync=settings.sqlite_server_sync,
        )
    else:
        writer = Writer(engine, threads=threads)
    services = Services(settings, engine, writer, worker.make_box(settings))
    if settings.worker:
        services.starters.append(_in_process_worker)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        if run_migrations:
            migrate(engine)
        services.writer.start()
        async with contextlib.AsyncExitStack() as stack:
            for starter in services.starters:
                await stack.enter_async_context(starter(services))
            settle_heap()
            yield
        await services.close()
        services.writer.stop()

    app = FastAPI(
        title="postbackd",
        version=__version__,
        description="Self-hosted conversion postback server. Admin API keys: `Authorization: Bearer <key>`.",
        lifespan=lifespan,
    )
    app.state.services = services
    errors.install(app)
    _routes(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.openapi = lambda: _openapi(app)
    return front.Front(app, settings.max_body_bytes)


@contextlib.asynccontextmanager
async def _in_process_worker(svc: Services):
    async with worker.running(svc.settings, svc.engine, svc.writer) as dispatcher:
        svc.on_new_deliveries(dispatcher.ring)
        svc.dispatcher = dispatcher
        yield


def _routes(app: FastAPI) -> None:
    for route in front.INGEST_ROUTES:  # the Front sends these past FastAPI; kept for docs/tests
        app.add_route(
            route.path, route.endpoint, methods=list(route.methods), include_in_schema=False
        )
    app.add_route("/healthz", _healthz, methods=["GET"], include_in_schema=False)
    app.add_route("/readyz", _readyz, methods=["GET"], include_in_schema=False)
    app.add_route("/metrics", _metrics, methods=["GET"], include_in_schema=False)
    app.include_router(admin_setup.router)
    app.include_router(admin_data.router)
    app.include_router(admin_postbacks.router)


def _openapi(app: FastAPI) -> dict:
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schema["paths"] = {**openapi_ingest.paths(), **schema["paths"]}
        app.openapi_schema = schema
    return app.openapi_schema


async def _healthz(_request: Request) -> Response:
    return errors.json_response({"status": "ok"})


async def _readyz(request: Request) -> Response:
    svc: Services = request.app.state.services
    try:
        await _to_thread(svc.read, lambda c: c.exec_driver_sql("SELECT 1").scalar())
    except sa.exc.DBAPIError as exc:
        return errors.json_response({"status": "unavailable", "error": type(exc).__name__}, 503)
    return errors.json_response({"status": "ready"})


async def _metrics(_request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def _to_thread(fn, *args):
    import asyncio

    return await asyncio.to_thread(fn, *args)
