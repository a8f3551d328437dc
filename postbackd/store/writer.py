"""The one write path into the database: writer threads that group-commit.

Each submitted unit of work is a function `fn(conn, *args)` run inside its own SAVEPOINT
of a batch transaction; everything waiting is committed together (one fsync for many
requests). A unit that raises is rolled back alone and its caller gets the exception; the
others still commit. Callers are told their result only after the COMMIT returned, so an
acknowledgement always means durable.

On SQLite there is one writer thread (one process owns the file); on PostgreSQL several,
each with its own connection and queue. Units given the same `key` (a lead's transaction
id) always go to the same thread: two batches holding the same lead's row lock in
opposite orders would deadlock.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import queue
import threading
import zlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from postbackd.store import lead_cache
from postbackd.store.tables import unit_clock

log = logging.getLogger(__name__)

Work = Callable[..., Any]
_STOP = object()
RETRYABLE_SQLSTATES = {"40P01", "40001"}  # deadlock detected, serialization failure


@dataclass(slots=True)
class _Item:
    fn: Work
    args: tuple
    future: concurrent.futures.Future | asyncio.Future
    loop: asyncio.AbstractEventLoop | None = None  # set for asyncio futures


class Writer:
    """Group-commit writer threads over one engine."""

    def __init__(
        self,
        engine: sa.Engine,
        threads: int = 1,
        max_batch: int = 256,
        report: Callable[[list[tuple[_Item, bool, Any]]], None] | None = None,
    ):
        self.engine = engine
        self.max_batch = max_batch
        self._report = report or _deliver  # the writer process sends results over its pipe
        self._queues: list[queue.SimpleQueue] = [queue.SimpleQueue() for _ in range(threads)]
        self._threads = [
            threading.Thread(target=self._loop, args=(q,), name=f"writer-{i}", daemon=True)
            for i, q in enumerate(self._queues)
        ]
        self._next = itertools.cycle(range(threads))
        self._after_commit: list[Callable[[], None]] = []
        self.batches = 0
        self.units = 0

    def start(self) -> Writer:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        for q in self._queues:
            q.put(_STOP)
        for t in self._threads:
            if t.ident is not None:  # never started: the writer process ran batches itself
                t.join(timeout=10)

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` (in the writer thread) after every commit; must be quick."""
        self._after_commit.append(callback)

    def _queue_for(self, key: str | None) -> queue.SimpleQueue:
        if len(self._queues) == 1:
            return self._queues[0]
        if key is None:
            return self._queues[next(self._next)]
        return self._queues[zlib.crc32(key.encode()) % len(self._queues)]

    def submit(self, fn: Work, *args: Any, key: str | None = None) -> concurrent.futures.Future:
        item = _Item(fn, args, concurrent.futures.Future())
        self._queue_for(key).put(item)
        return item.future

    async def run(self, fn: Work, *args: Any, key: str | None = None) -> Any:
        """Run `fn(conn, *args)` in a batch; returns after the commit."""
        loop = asyncio.get_running_loop()
        item = _Item(fn, args, loop.create_future(), loop)
        self._queue_for(key).put(item)
        return await item.future

    def run_sync(self, fn: Work, *args: Any, timeout: float = 60, key: str | None = None) -> Any:
        return self.submit(fn, *args, key=key).result(timeout)

    def enqueue(self, item: _Item, key: str | None = None) -> None:
        """Queue a unit whose outcome goes to `report` (the writer process's pipe)."""
        self._queue_for(key).put(item)

    def _take_batch(self, q: queue.SimpleQueue) -> list[_Item] | None:
        first = q.get()
        if first is _STOP:
            return None
        batch = [first]
        while len(batch) < self.max_batch:
            try:
                item = q.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                q.put(_STOP)
                break
            batch.append(item)
        return batch

    def _loop(self, q: queue.SimpleQueue) -> None:
        conn = None
        while (batch := self._take_batch(q)) is not None:
            conn = self.process(conn, batch)
        self.close(conn)

    @staticmethod
    def close(conn: sa.Connection | None) -> None:
        """Give a batch connection back (its lead cache stays behind with it)."""
        if conn is not None:
            lead_cache.uninstall(conn)
            conn.close()

    def process(self, conn: sa.Connection | None, batch: list[_Item]) -> sa.Connection | None:
        """Run and commit one batch on `conn` (opened if None), report every outcome; returns
        the connection to use next. The writer process calls this from its only thread."""
        try:
            if conn is None:
                conn = self.engine.connect().execution_options(immediate=True)
                lead_cache.install(conn)
            outcomes = self._run_batch(conn, batch)
        except Exception as exc:  # the commit itself failed: nobody is acknowledged
            log.exception("writer batch of %d failed", len(batch))
            outcomes = [(item, False, exc) for item in batch]
            conn = _discard(conn)
        self._report(outcomes)
        for callback in self._after_commit:
            callback()
        return conn

    def _run_batch(self, conn: sa.Connection, batch: list[_Item]) -> list[tuple[_Item, bool, Any]]:
        self.batches += 1
        self.units += len(batch)
        cache = lead_cache.of(conn)
        if len(batch) == 1:
            return [_run_alone(conn, batch[0], cache)]
        with conn.begin():
            if cache is not None:
                cache.begin(conn.connection.dbapi_connection)
            return [(item, *_run_unit(conn, item, cache)) for item in batch]


def _deliver(outcomes: list[tuple[_Item, bool, Any]]) -> None:
    """Tell every caller; one wake-up per event loop per batch, not one per request."""
    by_loop: dict[asyncio.AbstractEventLoop, list] = defaultdict(list)
    for item, ok, value in outcomes:
        if item.loop is None:
            if ok:
                item.future.set_result(value)
            else:
                item.future.set_exception(value)
        else:
            by_loop[item.loop].append((item.future, ok, value))
    try:
        here = asyncio.get_running_loop()  # the writer process's results, read on the loop
    except RuntimeError:
        here = None
    for loop, results in by_loop.items():
        if loop is here:
            _settle(results)
            continue
        try:
            loop.call_soon_threadsafe(_settle, results)
        except RuntimeError:  # that loop is closed: its callers are gone
            log.warning("dropping %d results for a closed event loop", len(results))


def _settle(results: list) -> None:
    for future, ok, value in results:
        if future.cancelled():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


def _run_alone(
    conn: sa.Connection, item: _Item, cache: lead_cache.LeadCache | None, tries: int = 3
) -> tuple[_Item, bool, Any]:
    """A batch of one needs no SAVEPOINT: its transaction is its unit (two statements, and
    on PostgreSQL two round trips, fewer; at moderate load most batches are single).

    A failure of the COMMIT itself propagates, like a batch's: nobody is acknowledged and
    the connection is replaced.
    """
    for attempt in range(tries):
        tx = conn.begin()
        try:
            if cache is not None:
                cache.begin(conn.connection.dbapi_connection)
            value = _timed(conn, item)
        except Exception as exc:
            tx.rollback()
            if cache is not None:
                cache.unit_done(ok=False)
            if sqlstate(exc) in RETRYABLE_SQLSTATES and attempt + 1 < tries:
                continue
            return item, False, exc
        tx.commit()  # a failure here fails the batch: process() discards conn and cache
        if cache is not None:
            cache.unit_done(ok=True)
        return item, True, value
    raise AssertionError("unreachable")


def _run_unit(
    conn: sa.Connection, item: _Item, cache: lead_cache.LeadCache | None, tries: int = 3
) -> tuple[bool, Any]:
    """One unit in its own SAVEPOINT; a PostgreSQL deadlock victim is simply run again.

    The SAVEPOINT statements go straight to the driver: SQLAlchemy's nested-transaction
    bookkeeping cost more than the unit's own inserts on the ingest path.
    """
    raw = conn.connection.dbapi_connection
    for attempt in range(tries):
        _raw_exec(raw, "SAVEPOINT pbd_unit")
        try:
            value = _timed(conn, item)
        except Exception as exc:
            _raw_exec(raw, "ROLLBACK TO SAVEPOINT pbd_unit")
            _raw_exec(raw, "RELEASE SAVEPOINT pbd_unit")
            if cache is not None:
                cache.unit_done(ok=False)
            if sqlstate(exc) in RETRYABLE_SQLSTATES and attempt + 1 < tries:
                continue
            return False, exc
        _raw_exec(raw, "RELEASE SAVEPOINT pbd_unit")
        if cache is not None:
            cache.unit_done(ok=True)
        return True, value
    raise AssertionError("unreachable")


def _timed(conn: sa.Connection, item: _Item) -> Any:
    """Run a unit on its own clock: one instant for every stamp it writes."""
    unit_clock(True)
    try:
        return item.fn(conn, *item.args)
    finally:
        unit_clock(False)


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a driver error, raw (psycopg) or wrapped by SQLAlchemy."""
    return getattr(exc, "sqlstate", None) or getattr(getattr(exc, "orig", None), "sqlstate", None)


def _raw_exec(dbapi_conn: Any, sql: str) -> None:
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute(sql)
    finally:
        cursor.close()


def _discard(conn: sa.Connection | None) -> None:
    if conn is not None:
        try:
            lead_cache.uninstall(conn)  # it may hold what the failed COMMIT lost
            conn.invalidate()
            conn.close()
        except Exception:
            log.exception("closing a failed writer connection")
    return None
