"""Start and stop a dispatcher: inside the server (lifespan) or as `postbackd worker`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import sqlalchemy as sa

from postbackd.crypto import SecretBox
from postbackd.delivery import ssrf
from postbackd.delivery.dispatcher import Dispatcher
from postbackd.delivery.notify import Listener
from postbackd.delivery.sender import Sender
from postbackd.settings import Settings
from postbackd.store.cache import CONFIG
from postbackd.store.writer import Writer


def make_sender(settings: Settings) -> Sender:
    policy = ssrf.TargetPolicy(
        allow_loopback=settings.allow_loopback_targets, allow_private=settings.allow_private_targets
    )
    return Sender(
        policy, limit=settings.worker_concurrency, per_host=settings.per_target_concurrency
    )


def make_box(settings: Settings) -> SecretBox:
    return SecretBox.from_settings(settings.secret_key, settings.secret_key_file)


@contextlib.asynccontextmanager
async def running(
    settings: Settings, engine: sa.Engine, writer: Writer
) -> AsyncIterator[Dispatcher]:
    """A dispatcher running in this event loop until the block exits."""
    sender = make_sender(settings)
    dispatcher = Dispatcher(settings, engine, writer, sender, make_box(settings))
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    listener = Listener(str(engine.url.render_as_string(hide_password=False)), dispatcher.ring)
    if engine.dialect.name == "postgresql":
        listener.start()  # deliveries written by other processes wake this worker at once
    try:
        yield dispatcher
    finally:
        if engine.dialect.name == "postgresql":
            listener.stop()
        stop.set()
        dispatcher.ring()
        await asyncio.wait_for(task, 30)
        await sender.close()
        CONFIG.off_clear(dispatcher._cache.clear)
