"""The one write path into the database: writer threads that group-commit.

Each submitted unit of work is a function `fn(conn, *args)` run inside its own SAVEPOINT
of a batch transaction; everything waiting is committed together (one fsync for many
requests). A unit that raises is rolled back alone and its caller gets the exception; the
others still commit. Callers are told their result only after the COMMIT returned, so an
acknowledgement always means durable.

On SQLite there is one writer thread (one process owns the file); on PostgreSQL several,
each with its own connection, because PostgreSQL takes concurrent writers well.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

log = logging.getLogger(__name__)

Work = Callable[..., Any]
_STOP = object()


@dataclass(slots=True)
class _Item:
    fn: Work
    args: tuple
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)


class Writer:
    """Group-commit writer threads over one engine."""

    def __init__(self, engine: sa.Engine, threads: int = 1, max_batch: int = 256):
        self.engine = engine
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._loop, name=f"writer-{i}", daemon=True)
            for i in range(threads)
        ]
        self._after_commit: list[Callable[[], None]] = []
        self.batches = 0
        self.units = 0

    def start(self) -> Writer:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(_STOP)
        for t in self._threads:
            t.join(timeout=10)

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` (in the writer thread) after every commit; must be quick."""
        self._after_commit.append(callback)

    def submit(self, fn: Work, *args: Any) -> concurrent.futures.Future:
        item = _Item(fn, args)
        self._queue.put(item)
        return item.future

    async def run(self, fn: Work, *args: Any) -> Any:
        """Run `fn(conn, *args)` in a batch; returns after the commit."""
        return await asyncio.wrap_future(self.submit(fn, *args))

    def run_sync(self, fn: Work, *args: Any, timeout: float = 60) -> Any:
        return self.submit(fn, *args).result(timeout)

    def _take_batch(self) -> list[_Item] | None:
        first = self._queue.get()
        if first is _STOP:
            return None
        batch = [first]
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                self._queue.put(_STOP)
                break
            batch.append(item)
        return batch

    def _loop(self) -> None:
        conn = None
        while (batch := self._take_batch()) is not None:
            try:
                conn = conn or self.engine.connect().execution_options(immediate=True)
                self._run_batch(conn, batch)
            except Exception as exc:  # the commit itself failed: nobody is acknowledged
                log.exception("writer batch of %d failed", len(batch))
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                conn = _discard(conn)
        if conn is not None:
            conn.close()

    def _run_batch(self, conn: sa.Connection, batch: list[_Item]) -> None:
        results: list[tuple[_Item, bool, Any]] = []
        with conn.begin():
            for item in batch:
                results.append((item, *_run_unit(conn, item)))
        self.batches += 1
        self.units += len(batch)
        for item, ok, value in results:
            if ok:
                item.future.set_result(value)
            else:
                item.future.set_exception(value)
        for callback in self._after_commit:
            callback()


RETRYABLE_PG = {"40P01", "40001"}  # deadlock detected, serialization failure


def _run_unit(conn: sa.Connection, item: _Item, tries: int = 3) -> tuple[bool, Any]:
    """One unit in its own SAVEPOINT; a PostgreSQL deadlock victim is simply run again.

    The SAVEPOINT statements go straight to the driver: SQLAlchemy's nested-transaction
    bookkeeping cost more than the unit's own inserts on the ingest path.
    """
    raw = conn.connection.dbapi_connection
    for attempt in range(tries):
        _raw_exec(raw, "SAVEPOINT pbd_unit")
        try:
            value = item.fn(conn, *item.args)
        except sa.exc.DBAPIError as exc:
            _raw_exec(raw, "ROLLBACK TO SAVEPOINT pbd_unit")
            _raw_exec(raw, "RELEASE SAVEPOINT pbd_unit")
            if _sqlstate(exc) in RETRYABLE_PG and attempt + 1 < tries:
                continue
            return False, exc
        except Exception as exc:
            _raw_exec(raw, "ROLLBACK TO SAVEPOINT pbd_unit")
            _raw_exec(raw, "RELEASE SAVEPOINT pbd_unit")
            return False, exc
        _raw_exec(raw, "RELEASE SAVEPOINT pbd_unit")
        return True, value
    raise AssertionError("unreachable")


def _raw_exec(dbapi_conn: Any, sql: str) -> None:
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute(sql)
    finally:
        cursor.close()


def _sqlstate(exc: sa.exc.DBAPIError) -> str | None:
    return getattr(exc.orig, "sqlstate", None)


def _discard(conn: sa.Connection | None) -> None:
    if conn is not None:
        try:
            conn.invalidate()
            conn.close()
        except Exception:
            log.exception("closing a failed writer connection")
    return None
