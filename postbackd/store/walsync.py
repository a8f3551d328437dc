"""The SQLite writer child's commits made durable by the server process (the WAL's fsync).

With `synchronous=FULL` every COMMIT of the writer child ends in an `fdatasync` of the
WAL, and the child, one thread on one core and the limit of ingest at saturation, waits
for the disk (~15% of its wall clock here) before it can start the next batch. Here the
child commits with `synchronous=NORMAL` (the WAL frames are written, not synced) and sends
its results at once; the server process, which has a core to spare, syncs the WAL in a
thread and only then settles the callers. One `fdatasync` covers every commit the child
finished before it began, so each sync answers every result that arrived meanwhile, in
the order they came.

Why the promise "an answer means durable" still holds:
- a result is settled only after an `fdatasync` of the WAL file that began after the
  child's COMMIT had returned, which is the sync FULL would have done inside it;
- WAL recovery replays a valid prefix of the log (frames carry a checksum chain), so a
  power cut can only lose a suffix of commits, none of them answered;
- in NORMAL mode SQLite still syncs the WAL before every checkpoint and the database
  after it, so checkpoints are as safe as under FULL.
A thread beside the writer inside the child was tried three times and lost: its Python
(reporting results) competes with the writer for the child's GIL. In the server process
the sync thread only waits on the disk and schedules one callback.

A failed `fdatasync` (EIO) leaves the page cache in an unknown state, and a later sync may
"succeed" over lost pages: nothing waiting is acknowledged and the writer refuses all
further work until the server is restarted, as PostgreSQL panics.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from postbackd.errors import PostbackdError

log = logging.getLogger(__name__)


class SyncFailed(PostbackdError):
    """The database log could not be synced: the commit may not survive a power cut, so
    it is not acknowledged (503; the client may retry once the server is restarted)."""

    status = 503
    code = "writer_unavailable"


def wal_to_sync(url_database: str | None, synchronous: str) -> str | None:
    """The WAL file the server syncs for a SQLite database file at FULL, else None (an
    in-memory database, NORMAL or EXTRA chosen)."""
    if synchronous.upper() != "FULL" or not url_database or url_database == ":memory:":
        return None
    if url_database.startswith("file:"):
        return None  # URI filenames: let SQLite sync inside COMMIT, as before
    return os.path.abspath(url_database) + "-wal"


class WalSync:
    """The sync thread; `add` what arrived, `done(batches)` is called after each sync."""

    def __init__(self, wal_path: str, done: Callable[[list], None], fail: Callable[[list], None]):
        self.path = wal_path
        self._done = done
        self._fail = fail
        self._fdatasync = os.fdatasync  # looked up here: the tests' seam
        self._fd: int | None = None
        self._cond = threading.Condition()
        self._waiting: list = []
        self._stopping = False
        self.failed: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="wal-sync", daemon=True)
        self._thread.start()

    def add(self, batch) -> None:
        with self._cond:
            self._waiting.append(batch)
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(30)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._waiting or self._stopping)
                if not self._waiting:
                    return
                batches, self._waiting = self._waiting, []
            try:
                self._sync_then_hand_on(batches)
            except Exception:  # a bug here must not leave callers waiting forever
                log.exception("the WAL sync thread failed")
                self.failed = self.failed or OSError("the WAL sync thread failed")
                self._fail(batches)

    def _sync_then_hand_on(self, batches: list) -> None:
        if self.failed is None:
            try:
                self._sync()
            except OSError as exc:
                self.failed = exc
                log.critical(
                    "fdatasync of %s failed: %s; nothing more is acknowledged until a restart",
                    self.path,
                    exc,
                )
        (self._done if self.failed is None else self._fail)(batches)

    def _sync(self) -> None:
        """fdatasync the WAL. If SQLite deleted it meanwhile (its last connection closed,
        which checkpoints it into the database and syncs that first) nothing is left to
        sync; if it was recreated, the new file is synced too."""
        if self._fd is not None:
            self._fdatasync(self._fd)
        try:
            current = os.stat(self.path).st_ino
            if self._fd is not None and os.fstat(self._fd).st_ino == current:
                return
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return
        if self._fd is not None:
            os.close(self._fd)
        self._fd = fd
        self._fdatasync(fd)
