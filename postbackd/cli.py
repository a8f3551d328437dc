"""The `postbackd` command: serve, worker, migrate, apikey, demo, replay, settings."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from postbackd.settings import Settings, describe
from postbackd.store import orgs
from postbackd.store.engine import make_engine
from postbackd.store.engine import migrate as run_migrations
from postbackd.store.writer import Writer

app = typer.Typer(help="postbackd: a self-hosted conversion postback server.", no_args_is_help=True)
apikey = typer.Typer(help="Create API keys (and organizations).", no_args_is_help=True)
app.add_typer(apikey, name="apikey")
console = Console(soft_wrap=True)

DbOpt = Annotated[
    str | None, typer.Option("--database-url", help="overrides POSTBACKD_DATABASE_URL")
]


def _settings(**overrides) -> Settings:
    settings = Settings.from_env(**overrides)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    return settings


def _engine(settings: Settings):
    engine = make_engine(settings.database_url, synchronous=settings.sqlite_synchronous)
    run_migrations(engine)
    return engine


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="listen address (POSTBACKD_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="listen port (POSTBACKD_PORT)")] = None,
    database_url: DbOpt = None,
    worker: Annotated[
        bool | None, typer.Option("--worker/--no-worker", help="run deliveries in-process")
    ] = None,
) -> None:
    """Run the HTTP server (migrations are applied on start)."""
    settings = _settings(host=host, port=port, database_url=database_url, worker=worker)
    _serve(settings)


def _serve(settings: Settings) -> None:
    import uvicorn

    from postbackd.api.app import create_app

    app_ = create_app(settings, writer_process=settings.wants_writer_process)
    uvicorn.run(
        app_,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level=settings.log_level,
    )


@app.command()
def migrate(database_url: DbOpt = None) -> None:
    """Apply database migrations."""
    settings = _settings(database_url=database_url)
    _engine(settings)
    console.print(f"[green]migrated[/] {settings.database_url}")


@apikey.command("create")
def apikey_create(
    org: Annotated[str | None, typer.Option(help="existing organization id (org_…)")] = None,
    org_name: Annotated[
        str | None, typer.Option(help="create a new organization with this name")
    ] = None,
    name: Annotated[str, typer.Option(help="a label for the key")] = "cli",
    database_url: DbOpt = None,
) -> None:
    """Create an organization with its first API key, or another key for an existing one."""
    if bool(org) == bool(org_name):
        raise typer.BadParameter("give exactly one of --org or --org-name")
    engine = _engine(_settings(database_url=database_url))
    with engine.begin() as conn:
        if org_name:
            org = orgs.create_org(conn, org_name)["id"]
        elif orgs.get_org(conn, org) is None:
            raise typer.BadParameter(f"organization {org} not found")
        row, key = orgs.create_key(conn, org, name)
    console.print(f"organization [bold]{org}[/]\napi key      [bold]{key}[/]  (shown once)")


@app.command()
def demo(
    host: Annotated[str | None, typer.Option(help="listen address")] = None,
    port: Annotated[int | None, typer.Option(help="listen port")] = None,
    database_url: DbOpt = None,
) -> None:
    """Load the demo data (idempotent) and run the server with it."""
    from postbackd import demo as demo_data
    from postbackd.delivery.worker import make_box
    from postbackd.demo_receiver import EchoReceiver

    settings = _settings(host=host, port=port, database_url=database_url)
    engine = _engine(settings)
    receiver = EchoReceiver(console).start()
    writer = Writer(engine).start()
    try:
        info = demo_data.load(writer, settings, make_box(settings), receiver.url)
    finally:
        writer.stop()
    console.print(f"echo receiver   {receiver.url}  (the demo's partner endpoint)")
    demo_data.print_welcome(console, settings, info)
    _serve(demo_data.settings_for_demo(settings))


@app.command()
def worker(
    database_url: DbOpt = None,
    concurrency: Annotated[
        int | None, typer.Option(help="requests in flight (POSTBACKD_WORKER_CONCURRENCY)")
    ] = None,
) -> None:
    """Run a delivery worker alone (several may share one PostgreSQL database)."""
    import asyncio
    import signal

    from postbackd.delivery.worker import running
    from postbackd.runtime import settle_heap

    settings = _settings(database_url=database_url, worker_concurrency=concurrency)
    engine = _engine(settings)
    if engine.dialect.name == "sqlite":
        console.print(
            "[yellow]note:[/] on SQLite one process should own the file; prefer the server's worker"
        )
    threads = settings.writer_threads or (1 if engine.dialect.name == "sqlite" else 2)
    writer = Writer(engine, threads=threads).start()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with running(settings, engine, writer) as dispatcher:
            console.print(f"worker {dispatcher.worker_id} delivering from {settings.database_url}")
            settle_heap()
            await stop.wait()

    try:
        import uvloop

        uvloop.run(main())
    finally:
        writer.stop()


@app.command()
def replay(
    org: Annotated[str, typer.Option(help="organization id (org_…)")],
    state: Annotated[
        str | None, typer.Option(help="only deliveries in this state, e.g. dead")
    ] = "dead",
    postback: Annotated[str | None, typer.Option(help="only this postback (pb_…)")] = None,
    since: Annotated[
        str | None, typer.Option(help="created at or after (ISO 8601, UTC if no offset)")
    ] = None,
    until: Annotated[str | None, typer.Option(help="created before (ISO 8601)")] = None,
    database_url: DbOpt = None,
) -> None:
    """Put matching deliveries back in the queue (same idempotency keys), with a progress bar."""
    from rich.progress import Progress

    from postbackd.store import outbox

    engine = _engine(_settings(database_url=database_url))
    filters = {
        "state": None if state in (None, "", "any") else state,
        "postback_id": postback,
        "created_after": _when(since),
        "created_before": _when(until),
    }
    with engine.connect() as conn:
        total = outbox.count(conn, org, filters)
    writer = Writer(engine).start()
    done = 0
    try:
        with Progress(console=console) as progress:
            task = progress.add_task("replaying", total=total)
            while done < total:
                batch = writer.run_sync(outbox.requeue, org, filters, 500)
                if not batch:
                    break
                done += len(batch)
                progress.update(task, advance=len(batch))
    finally:
        writer.stop()
    console.print(f"replayed {done} deliveries; a running worker sends them now")


def _when(value: str | None):
    from datetime import UTC, datetime

    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@app.command("settings")
def show_settings() -> None:
    """Every setting with its environment variable, flag and default."""
    table = Table("environment variable", "default", "meaning")
    for env, _flag, default, help_ in describe():
        table.add_row(env, repr(default), help_)
    console.print(table)


if __name__ == "__main__":
    app()
