"""Cross-process doorbell on PostgreSQL: LISTEN/NOTIFY on the outbox channel.

A transaction that writes pending deliveries issues `pg_notify` (delivered on commit,
coalesced per transaction); every worker process listening on the channel claims at
once instead of waiting for its next poll. Lost notifications only cost latency: the
dispatcher still polls.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg

from postbackd.store.engine import normalize_url
from postbackd.store.outbox import CHANNEL

log = logging.getLogger(__name__)


class Listener:
    """A thread that rings `ring` for every notification on the outbox channel."""

    def __init__(self, url: str, ring: Callable[[], None]):
        self.dsn = normalize_url(url).replace("postgresql+psycopg://", "postgresql://", 1)
        self.ring = ring
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outbox-listener", daemon=True)

    def start(self) -> Listener:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self.ring()
            except psycopg.Error:
                log.warning("outbox listener lost its connection; reconnecting", exc_info=True)
                self._stop.wait(1.0)
