"""What a running server holds: settings, engine, writer, locks, and the worker's doorbell."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from postbackd.api.ingest import InflightLocks
from postbackd.crypto import SecretBox
from postbackd.settings import Settings
from postbackd.store import claims
from postbackd.store.cache import CONFIG, clearing
from postbackd.store.writer import Writer


class Services:
    def __init__(self, settings: Settings, engine: sa.Engine, writer: Writer, box: SecretBox):
        self.settings = settings
        self.box = box
        self.dispatcher = None
        self._sender = None
        self.engine = engine
        self.writer = writer
        self.locks = InflightLocks()
        self._doorbells: list[Callable[[], None]] = []
        # Async context managers entered for the server's lifetime (the delivery worker).
        self.starters: list[Callable[[Services], Any]] = []

    def sender(self):
        """The worker's HTTP client, or one of our own when no worker runs here."""
        if self.dispatcher is not None:
            return self.dispatcher.sender
        if self._sender is None:
            from postbackd.delivery.worker import make_sender

            self._sender = make_sender(self.settings)
        return self._sender

    async def close(self) -> None:
        if self._sender is not None:
            await self._sender.close()

    def on_new_deliveries(self, ring: Callable[[], None]) -> None:
        self._doorbells.append(ring)

    def after_write(self, new_deliveries: int) -> None:
        """Wake in-process workers right away instead of waiting for their next poll."""
        if new_deliveries:
            for ring in self._doorbells:
                ring()

    def handoff_lease(self) -> claims.Handoff | None:
        """A lease of this process's worker for deliveries the next write plans, if any."""
        return self.dispatcher.handoff_lease() if self.dispatcher is not None else None

    def read(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a read-only store function on a pooled connection (WAL readers never block)."""
        with self.engine.connect() as conn:
            return fn(conn, *args)

    def write(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Blocking write through the writer (admin routes run in a thread pool).

        Clears the configuration cache, so this process's ingest sees the change at once.
        """
        try:
            return self.writer.run_sync(clearing, fn, *args)
        finally:
            CONFIG.clear()
