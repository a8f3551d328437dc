"""The group-commit writer in a child process: the SQLite server's second core.

One Python process runs on one core (the GIL), and a SQLite server spends about half its
CPU in the writer: building rows, binding parameters, decoding results. `ProcessWriter`
has the `Writer` interface, but the `Writer` itself (store/writer.py, unchanged) runs in a
child process that owns the database file; the server process only parses HTTP, sends
deliveries and waits. One process still owns the writes, as SQLite wants.

Units cross the pipe pickled: the function by reference (so it must be a module-level
function, or a `functools.partial` of one), its arguments by value. Each unit and each
result is pickled on its own, so one that cannot be pickled fails alone. A result reaches
its caller only after the child's COMMIT returned and, on a SQLite file at FULL, after this
process synced the WAL that COMMIT wrote (store/walsync.py: the child commits at NORMAL and
never waits for the disk).

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
import select
import signal
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from postbackd.errors import PostbackdError
from postbackd.runtime import settle_heap
from postbackd.store import walsync
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
    """`Writer`'s interface, with the writer threads in a child process.

    Started inside a running event loop (the server's lifespan), the pipe is served by that
    loop: units sent during one loop turn leave in one write, results are read and their
    futures settled right there. A reader thread would cost a GIL hand-over and a wake-up
    of the loop per batch, which measured 10-15% of the server process at a few thousand
    events/s. Started outside a loop (the CLI, tests), a reader thread serves the results.
    Units may come from any thread in both modes.
    """

    remote = True  # units run in another process (the dispatcher renders claims there)

    def __init__(
        self,
        engine: sa.Engine,
        *,
        synchronous: str = "FULL",
        threads: int = 1,
        server_sync: bool = True,
    ):
        """`server_sync`: on a SQLite file at FULL, the child commits at NORMAL and this
        process syncs the WAL before answering (store/walsync.py)."""
        self.engine = engine  # the parent's engine: reads only; the child opens its own
        self.url = engine.url.render_as_string(hide_password=False)
        self.synchronous = synchronous
        sqlite = engine.dialect.name == "sqlite"
        wal = walsync.wal_to_sync(engine.url.database, synchronous) if sqlite else None
        self.wal_path = wal if server_sync else None
        self._sync: walsync.WalSync | None = None
        self.threads = threads
        self._ids = itertools.count(1)
        self._pending: dict[int, _Item] = {}
        self._lock = threading.Lock()  # thread mode: one sender at a time on the pipe
        self._conn: Any = None
        self._proc: Any = None
        self._stopping = False
        self._reader: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # loop mode
        self._loop_thread = 0
        self._frames = Frames()
        self._out: list[bytes] = []  # loop mode: frames waiting for the next write
        self._flushing = False

    # ---- lifecycle --------------------------------------------------------------------

    def start(self) -> ProcessWriter:
        try:
            self._loop = asyncio.get_running_loop()
            self._loop_thread = threading.get_ident()
        except RuntimeError:
            self._loop = None
        if self.wal_path is not None:
            self._sync = walsync.WalSync(self.wal_path, self._synced, self._sync_failed)
        self._attach(self._spawn())
        return self

    def _spawn(self) -> Any:
        """Start a child and wait until it has opened the database; returns our pipe end."""
        ctx = multiprocessing.get_context("spawn")
        ours, theirs = ctx.Pipe(duplex=True)
        # with the server syncing the WAL, the child's COMMIT only writes it
        synchronous = "NORMAL" if self.wal_path is not None else self.synchronous
        proc = ctx.Process(
            target=_child_main,
            args=(theirs, self.url, synchronous, self.threads, logging.root.level),
            name="postbackd-writer",
            daemon=True,
        )
        proc.start()
        theirs.close()
        try:
            ready = ours.poll(60) and ours.recv_bytes() == _READY
        except (EOFError, OSError):
            ready = False
        if not ready:
            proc.kill()
            ours.close()
            raise RuntimeError("the writer process did not start")
        self._proc = proc
        return ours

    def _attach(self, conn) -> None:
        if self._loop is None:
            self._conn = conn
            self._reader = threading.Thread(target=self._read, args=(conn,), name="writer-results")
            self._reader.daemon = True
            self._reader.start()
            return
        if self._stopping:  # a replacement that finished starting after stop(): let it go
            with contextlib.suppress(OSError):
                conn.send_bytes(b"")
            conn.close()
            return
        os.set_blocking(conn.fileno(), False)
        self._frames = Frames()
        self._out.clear()
        self._conn = conn
        self._loop.add_reader(conn.fileno(), self._readable, conn)

    def stop(self) -> None:
        self._stopping = True
        if self._loop is not None and self._conn is not None:
            self._stop_on_loop(self._conn)
        else:
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
        if self._sync is not None:
            self._sync.stop()  # syncs and answers what already came back first

    def _stop_on_loop(self, conn) -> None:
        """Last words in loop mode: write what is queued and the stop message, then read
        answers until the child closes its end (blocking: the server is shutting down)."""
        fd = conn.fileno()
        self._loop.remove_reader(fd)
        self._loop.remove_writer(fd)
        os.set_blocking(fd, True)
        with contextlib.suppress(OSError):
            os.write(fd, b"".join([*self._out, frame(b"")]))  # noqa: ASYNC230 (shutdown)
        self._out.clear()
        while conn.poll(30):
            try:
                data = os.read(fd, 1 << 20)
            except OSError:
                break
            if not data:
                break
            self._received(data)
        self._gone(conn)

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
        if self._loop is not None and threading.get_ident() == self._loop_thread:
            raise RuntimeError("run_sync on the writer's event loop would wait forever; use run")
        return self.submit(fn, *args, key=key).result(timeout)

    def _send(self, item: _Item, key: str | None) -> None:
        if self._sync is not None and self._sync.failed is not None:
            raise walsync.SyncFailed(message="the database log could not be synced; restart")
        rid = next(self._ids)
        try:
            payload = pickle.dumps((item.fn, item.args, key), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # a closure or an open handle: a bug in the caller
            raise TypeError(f"cannot send {item.fn!r} to the writer process: {exc}") from exc
        message = rid.to_bytes(_RID, "little") + payload
        if self._conn is None:
            raise WriterGone(message="the writer process is restarting")
        if self._loop is None:
            self._send_now(rid, item, message)
        elif threading.get_ident() == self._loop_thread:
            self._queue(rid, item, message)
        else:
            self._loop.call_soon_threadsafe(self._queue, rid, item, message)

    def _send_now(self, rid: int, item: _Item, message: bytes) -> None:
        with self._lock:
            if self._conn is None:
                raise WriterGone(message="the writer process is restarting")
            self._pending[rid] = item
            try:
                self._conn.send_bytes(message)
            except OSError as exc:
                self._pending.pop(rid, None)
                raise WriterGone(message="the writer process is gone") from exc

    # ---- loop mode ------------------------------------------------------------------------

    def _queue(self, rid: int, item: _Item, message: bytes) -> None:
        if self._conn is None:  # died since the caller looked
            _deliver([(item, False, WriterGone(message="the writer process is restarting"))])
            return
        self._pending[rid] = item
        self._out.append(frame(message))
        if not self._flushing:
            self._flushing = True
            self._loop.call_soon(self._flush, self._conn)

    def _flush(self, conn) -> None:
        """Write the queued frames; what the pipe does not take waits for it to drain."""
        if conn is not self._conn:
            return  # that child is gone; its units were failed with it
        data = b"".join(self._out)
        self._out.clear()
        try:
            sent = os.write(conn.fileno(), data)
        except BlockingIOError:
            sent = 0
        except OSError:  # the child is gone: the reader sees EOF and fails what is pending
            self._flushing = False
            return
        if sent < len(data):
            self._out.append(data[sent:])
            self._loop.add_writer(conn.fileno(), self._drained, conn)
        else:
            self._flushing = False

    def _drained(self, conn) -> None:
        self._loop.remove_writer(conn.fileno())
        self._flush(conn)

    def _readable(self, conn) -> None:
        try:
            data = os.read(conn.fileno(), 1 << 20)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._loop.remove_reader(conn.fileno())
            self._loop.remove_writer(conn.fileno())
            self._gone(conn)
            return
        self._received(data)

    def _received(self, data: bytes) -> None:
        """Loop mode: settle every whole answer that `data` completes."""
        self._frames.feed(data)
        for message in self._frames.pop():
            self._settle(pickle.loads(message))

    def _gone(self, conn) -> None:
        """Loop mode: the child is gone; a new one starts in a thread (~1 s, not on the loop)."""
        self._fail_pending(conn)
        self._flushing = False
        self._out.clear()
        conn.close()
        if not self._stopping:
            threading.Thread(target=self._respawn, name="writer-respawn", daemon=True).start()

    def _respawn(self) -> None:
        while not self._stopping:
            try:
                conn = self._spawn()
            except Exception:
                log.exception("could not start the writer process; trying again")
                time.sleep(1)
                continue
            try:
                self._loop.call_soon_threadsafe(self._attach, conn)
            except RuntimeError:  # the loop is closed: the server is gone
                conn.close()
            return

    # ---- results ----------------------------------------------------------------------

    def _read(self, conn) -> None:
        while True:
            try:
                message = conn.recv_bytes()
            except (EOFError, OSError):
                break
            self._settle(pickle.loads(message))
        self._fail_pending(conn)
        if not self._stopping:
            self._attach(self._spawn())

    def _settle(self, outcomes: list[tuple[int, bool, bytes]]) -> None:
        """Results off the pipe: no longer in flight (a child that dies now cannot fail
        them: they were committed), answered now or once the WAL is synced."""
        with self._lock:
            items = [(self._pending.pop(rid, None), ok, payload) for rid, ok, payload in outcomes]
        came = [(item, ok, payload) for item, ok, payload in items if item]
        if self._sync is None:
            _answer([came])
        else:
            self._sync.add(came)

    def _synced(self, batches: list) -> None:
        """Sync thread: answer on the loop (one wake-up per sync), or here in thread mode."""
        self._on_loop(_answer, batches)

    def _sync_failed(self, batches: list) -> None:
        error = walsync.SyncFailed(message="the database log could not be synced")
        self._on_loop(_deliver, [(item, False, error) for batch in batches for item, *_ in batch])

    def _on_loop(self, fn: Callable[[list], None], arg: list) -> None:
        if self._loop is None:
            fn(arg)
            return
        try:
            self._loop.call_soon_threadsafe(fn, arg)
        except RuntimeError:  # the loop is closed: its callers are gone
            log.warning("dropping answers for a closed event loop")

    def _fail_pending(self, conn) -> None:
        """The child is gone: fail everything in flight (none of it was acknowledged)."""
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


class Frames:
    """`multiprocessing.Connection`'s framing (a 4-byte big-endian length, or -1 and an
    8-byte one), cut out of whatever a read returned: one read may carry many messages."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    def pop(self, limit: int = 1 << 30) -> list[bytes]:
        """Whole messages received so far, oldest first, at most `limit`."""
        buf, pos, out = self._buf, 0, []
        end = len(buf)
        while len(out) < limit and end - pos >= 4:
            (size,) = _HEAD.unpack_from(buf, pos)
            head = 4
            if size == -1:
                if end - pos < 12:
                    break
                (size,) = _LONG.unpack_from(buf, pos + 4)
                head = 12
            if end - pos - head < size:
                break
            out.append(bytes(buf[pos + head : pos + head + size]))
            pos += head + size
        del buf[:pos]
        return out


_HEAD = struct.Struct("!i")
_LONG = struct.Struct("!Q")


def frame(message: bytes) -> bytes:
    """One message as `Connection.send_bytes` would frame it."""
    n = len(message)
    if n > 0x7FFFFFFF:
        return _HEAD.pack(-1) + _LONG.pack(n) + message
    return _HEAD.pack(n) + message


def _answer(batches: list) -> None:
    _deliver([(item, *_unpickled(ok, p)) for batch in batches for item, ok, p in batch])


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


GATHER_SECONDS = 0.001  # how long a small batch waits for company when units come fast
GATHER_BELOW = 8  # ... "small"
BUSY_GAP = 0.002  # ... "fast": the batch's first unit came within this of us asking


def _serve_alone(conn, writer: Writer, report: Callable) -> None:
    """SQLite's one writer: this thread reads the units and runs them itself. A reader
    thread handing units to a writer thread cost a GIL hand-over per unit (CPU, and
    milliseconds of latency while the other thread held it); here whatever arrived while
    a batch ran and committed simply becomes the next batch (one read takes it all).

    Each batch costs a BEGIN and a COMMIT (and, in the server process, an fdatasync that
    every batch committed meanwhile shares). At a thousand events a second the batches
    were single units, so a small batch whose units came fast waits a millisecond for more
    before it commits (SQLite's answer to PostgreSQL's `commit_delay`); a quiet server
    never waits.
    """
    inbox = _Inbox(conn)
    db = None
    try:
        while True:
            asked = time.monotonic()
            if not (messages := inbox.take(writer.max_batch)):
                return  # the server is gone
            fast = time.monotonic() - asked < BUSY_GAP
            if fast and len(messages) < GATHER_BELOW and messages[-1]:
                inbox.gather(GATHER_SECONDS)
                messages += inbox.frames.pop(writer.max_batch - len(messages))
            batch, stop = _units(messages, report)
            if batch:
                db = writer.process(db, batch)
            if stop:
                return
    finally:
        writer.close(db)


def _units(messages: list[bytes], report: Callable) -> tuple[list[_Item], bool]:
    """The units among `messages`; the flag says the server asked us to stop (an empty
    message, always its last)."""
    batch: list[_Item] = []
    for message in messages:
        if not message:
            return batch, True
        if (item := _unit(message, report)) is not None:
            batch.append(item[0])
    return batch, False


def _serve_units(conn, writer: Writer, report: Callable) -> None:
    """PostgreSQL's several writer threads: this thread only reads and hands units out."""
    inbox = _Inbox(conn)
    while messages := inbox.take(writer.max_batch):
        for message in messages:
            if not message:
                return
            if (item := _unit(message, report)) is not None:
                writer.enqueue(*item)


class _Inbox:
    """The child's end of the pipe, read in big gulps: one read returns every unit the
    server wrote since the last (two reads per unit, as `recv_bytes` does, cost more)."""

    def __init__(self, conn):
        self.fd = conn.fileno()
        self.frames = Frames()

    def take(self, limit: int) -> list[bytes]:
        """Up to `limit` messages, waiting for at least one; [] when the server is gone."""
        while not (messages := self.frames.pop(limit)):
            try:
                data = os.read(self.fd, 1 << 20)
            except OSError:
                return []
            if not data:
                return []
            self.frames.feed(data)
        return messages

    def gather(self, seconds: float) -> None:
        """Read what arrives within `seconds` (kept for the next `frames.pop`)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([self.fd], [], [], left)[0]:
                return
            try:
                data = os.read(self.fd, 1 << 20)
            except OSError:
                return
            if not data:
                return  # the server is gone: the next take() sees it too
            self.frames.feed(data)


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
