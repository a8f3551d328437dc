"""The group-commit writer in a child process: the SQLite server's second core.

One Python process runs on one core (the GIL), and a SQLite server spends about half its
CPU in the writer: building rows, binding parameters, decoding results. `ProcessWriter`
has the `Writer` interface, but the `Writer` itself (store/writer.py, unchanged) runs in a
child process that owns the database file; the server process only parses HTTP, sends
deliveries and waits. One process still owns the writes, as SQLite wants.

Units cross the pipe pickled: the function by reference (so it must be a module-level
function, or a `functools.partial` of one), its arguments by value. Each unit and each
result is pickled on its own, so one that cannot be pickled fails alone. A result reaches
its caller only after the child's COMMIT returned, exactly as with the thread writer.

If the child dies, every unit in flight fails (none of them was acknowledged) and a new
child is started; if the server process dies, the child reads EOF and exits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import multiprocessing
import os
import pickle
import signal
import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from postbackd.errors import PostbackdError
from postbackd.runtime import settle_heap
from postbackd.store.writer import Work, Writer, _deliver, _Item

log = logging.getLogger(__name__)
_RID = 8  # bytes of request id in front of each unit
_READY = b"ready"


class WriterGone(PostbackdError):
    """The writer process died while this unit was in flight; it was not acknowledged (the
    caller answers 503, and the client may retry)."""

    status = 503
    code = "writer_unavailable"


class ProcessWriter:
    """`Writer`'s interface, with the writer threads in a child process."""

    def __init__(self, engine: sa.Engine, *, synchronous: str = "FULL", threads: int = 1):
        self.engine = engine  # the parent's engine: reads only; the child opens its own
        self.url = engine.url.render_as_string(hide_password=False)
        self.synchronous = synchronous
        self.threads = threads
        self._ids = itertools.count(1)
        self._pending: dict[int, _Item] = {}
        self._lock = threading.Lock()  # one sender at a time on the pipe
        self._conn: Any = None
        self._proc: Any = None
        self._stopping = False
        self._reader: threading.Thread | None = None

    # ---- lifecycle --------------------------------------------------------------------

    def start(self) -> ProcessWriter:
        self._spawn()
        return self

    def _spawn(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        ours, theirs = ctx.Pipe(duplex=True)
        self._proc = ctx.Process(
            target=_child_main,
            args=(theirs, self.url, self.synchronous, self.threads, logging.root.level),
            name="postbackd-writer",
            daemon=True,
        )
        self._proc.start()
        theirs.close()
        if not ours.poll(60) or ours.recv_bytes() != _READY:
            raise RuntimeError("the writer process did not start")
        self._conn = ours
        self._reader = threading.Thread(target=self._read, args=(ours,), name="writer-results")
        self._reader.daemon = True
        self._reader.start()

    def stop(self) -> None:
        self._stopping = True
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(OSError):
                    self._conn.send_bytes(b"")  # the child finishes what it has, then exits
        if self._proc is not None:
            self._proc.join(30)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(5)
        if self._reader is not None:
            self._reader.join(5)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # ---- the Writer interface -----------------------------------------------------------

    def submit(self, fn: Work, *args: Any, key: str | None = None) -> concurrent.futures.Future:
        item = _Item(fn, args, concurrent.futures.Future())
        self._send(item, key)
        return item.future

    async def run(self, fn: Work, *args: Any, key: str | None = None) -> Any:
        """Run `fn(conn, *args)` in a batch of the writer process; returns after the commit."""
        loop = asyncio.get_running_loop()
        item = _Item(fn, args, loop.create_future(), loop)
        self._send(item, key)
        return await item.future

    def run_sync(self, fn: Work, *args: Any, timeout: float = 60, key: str | None = None) -> Any:
        return self.submit(fn, *args, key=key).result(timeout)

    def _send(self, item: _Item, key: str | None) -> None:
        rid = next(self._ids)
        try:
            payload = pickle.dumps((item.fn, item.args, key), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # a closure or an open handle: a bug in the caller
            raise TypeError(f"cannot send {item.fn!r} to the writer process: {exc}") from exc
        with self._lock:
            if self._conn is None:
                raise WriterGone(message="the writer process is restarting")
            self._pending[rid] = item
            try:
                self._conn.send_bytes(rid.to_bytes(_RID, "little") + payload)
            except OSError as exc:
                self._pending.pop(rid, None)
                raise WriterGone(message="the writer process is gone") from exc

    # ---- results ----------------------------------------------------------------------

    def _read(self, conn) -> None:
        while True:
            try:
                message = conn.recv_bytes()
            except (EOFError, OSError):
                break
            self._settle(pickle.loads(message))
        self._lost(conn)

    def _settle(self, outcomes: list[tuple[int, bool, bytes]]) -> None:
        with self._lock:
            items = [(self._pending.pop(rid, None), ok, payload) for rid, ok, payload in outcomes]
        _deliver([(item, *_unpickled(ok, payload)) for item, ok, payload in items if item])

    def _lost(self, conn) -> None:
        """The child is gone: fail everything in flight; start a new one unless stopping."""
        with self._lock:
            lost, self._pending = self._pending, {}
            if self._conn is conn:
                self._conn = None
        if lost:
            log.error("writer process exited with %d units in flight", len(lost))
        error = WriterGone(message="the writer process exited before committing this unit")
        _deliver([(item, False, error) for item in lost.values()])
        if not self._stopping:
            log.error("writer process died; starting a new one")
            self._spawn()


def _unpickled(ok: bool, payload: bytes) -> tuple[bool, Any]:
    try:
        return ok, pickle.loads(payload)
    except Exception as exc:
        return False, RuntimeError(f"could not read the writer's answer: {exc!r}")


# ---- the child ----------------------------------------------------------------------------


def _child_main(conn, url: str, synchronous: str, threads: int, log_level: int) -> None:
    # The server decides when we stop (EOF or an empty message on the pipe): a Ctrl-C or
    # SIGTERM to the process group must not cut the writer off before the server drains.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        level=log_level, format="%(asctime)s %(levelname)s %(name)s [writer] %(message)s"
    )
    from postbackd.store.engine import make_engine

    engine = make_engine(url, synchronous=synchronous, pool_size=max(2, threads))
    send_lock = threading.Lock()

    def report(outcomes: list[tuple[_Item, bool, Any]]) -> None:
        message = pickle.dumps(
            [(item.future, ok, _pickled(ok, value)) for item, ok, value in outcomes],
            protocol=pickle.HIGHEST_PROTOCOL,
        )
        with send_lock, contextlib.suppress(OSError):  # the server is gone; the commit stands
            conn.send_bytes(message)

    writer = Writer(engine, threads=threads, report=report)
    settle_heap()
    try:
        if threads == 1:
            conn.send_bytes(_READY)
            _serve_alone(conn, writer, report)
        else:
            writer.start()
            conn.send_bytes(_READY)
            _serve_units(conn, writer, report)
    finally:
        writer.stop()  # runs what was already received, then exits
        engine.dispose()
        os._exit(0)


def _serve_alone(conn, writer: Writer, report: Callable) -> None:
    """SQLite's one writer: this thread reads the units and runs them itself. A reader
    thread handing units to a writer thread cost a GIL hand-over per unit (CPU, and
    milliseconds of latency while the other thread held it); here whatever arrived while
    a batch ran and committed simply becomes the next batch."""
    db = None
    try:
        done = False
        while not done:
            batch, done = _read_batch(conn, writer.max_batch, report)
            if batch:
                db = writer.process(db, batch)
    finally:
        if db is not None:
            db.close()


def _read_batch(conn, limit: int, report: Callable) -> tuple[list[_Item], bool]:
    """Wait for one unit, then take what else is already waiting (up to `limit`); the flag
    says the server asked us to stop (or is gone)."""
    batch: list[_Item] = []
    while len(batch) < limit and (not batch or conn.poll(0)):
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            return batch, True
        if not message:
            return batch, True
        if (item := _unit(message, report)) is not None:
            batch.append(item[0])
    return batch, False


def _serve_units(conn, writer: Writer, report: Callable) -> None:
    """PostgreSQL's several writer threads: this thread only reads and hands units out."""
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            return
        if not message:
            return
        if (item := _unit(message, report)) is not None:
            writer.enqueue(*item)


def _unit(message: bytes, report: Callable) -> tuple[_Item, str | None] | None:
    """A unit and its key, off the wire; one that cannot be read fails alone."""
    rid = int.from_bytes(message[:_RID], "little")
    try:
        fn, args, key = pickle.loads(message[_RID:])
    except Exception as exc:
        report([(_Item(None, (), rid), False, RuntimeError(f"unreadable unit: {exc!r}"))])
        return None
    return _Item(fn, args, rid), key


def _pickled(ok: bool, value: Any) -> bytes:
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        if ok:
            value = RuntimeError(f"the writer's result {type(value).__name__} cannot be sent")
        else:
            value = RuntimeError(f"{type(value).__name__}: {value}")
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
