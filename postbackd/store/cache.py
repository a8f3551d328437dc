"""A short-lived cache of configuration rows read on the hot write path.

Organizations, event definitions, sources and postbacks change rarely and are read by
every inbound event. Admin writes in this process clear the cache at once; other
processes (several servers on one PostgreSQL) see a change within `TTL` seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

import sqlalchemy as sa

TTL = 2.0


class ConfigCache:
    def __init__(self, ttl: float = TTL):
        self.ttl = ttl
        self._data: dict[Hashable, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    def get(self, conn: sa.Connection, key: tuple, load: Callable[[sa.Connection], Any]) -> Any:
        full = (id(conn.engine), *key)  # one process may hold several databases (tests)
        hit = self._data.get(full)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        value = load(conn)
        with self._lock:
            self._data[full] = (now, value)
        return value

    def on_clear(self, listener: Callable[[], None]) -> None:
        """Other caches of configuration in this process (the worker's) clear with this one."""
        self._listeners.append(listener)

    def off_clear(self, listener: Callable[[], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
        for listener in self._listeners:
            listener()


CONFIG = ConfigCache()


def clearing(conn: sa.Connection, fn: Callable[..., Any], *args: Any) -> Any:
    """Writer unit wrapper for admin writes: run `fn`, then forget cached configuration in
    the process that ran it (the writer process plans deliveries from its own cache)."""
    try:
        return fn(conn, *args)
    finally:
        CONFIG.clear()
