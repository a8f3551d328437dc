"""SQLite's commit fsync, moved off the writer thread (pipelined group commit).

With `synchronous=FULL` a WAL commit is a `write` of the new frames and an `fdatasync` of
the WAL file, and the one writer thread waits for the disk (0.5-2 ms here, at times far
more) before it can start the next batch. Here the writer's own connection commits with
`synchronous=NORMAL` (the frames are written, not synced) and a sync thread makes them
durable: one `fdatasync` of the WAL covers every commit written before it, so it reports
every batch waiting at that moment, in commit order, and only then are their callers told.
The writer meanwhile runs the next batch. The disk work per commit is the same as FULL's;
what changes is that the writer no longer waits for it, and that one sync may serve
several batches.

Why this keeps the promise "an acknowledgement means durable":
- an answer leaves only after an `fdatasync` of the WAL that started after its COMMIT
  returned, which is the sync FULL would have done;
- WAL recovery replays a valid prefix of the log (frames carry a checksum chain), so a
  power cut can only drop a suffix of commits, all of them unacknowledged;
- SQLite still syncs the WAL before every checkpoint and the database after it in NORMAL
  mode, so checkpoints are as safe as under FULL.
A failed `fdatasync` (EIO) leaves the page cache in an unknown state; nothing waiting is
acknowledged and `failed` is set for the owner to stop (the writer process exits, as
PostgreSQL panics; its replacement reopens the file).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Report = Callable[[list], None]


class SyncFailed(OSError):
    """The WAL could not be synced: the commit may not survive a power cut, so the unit
    is not acknowledged (answered 503 like any writer failure; the client may retry)."""


def wal_of(dbapi_conn: Any) -> str | None:
    """The WAL file of a SQLite connection whose commits FULL would sync, else None (an
    in-memory or temporary database, another journal mode, NORMAL or EXTRA chosen)."""
    cur = dbapi_conn.cursor()
    try:
        mode = cur.execute("PRAGMA journal_mode").fetchone()[0]
        sync = cur.execute("PRAGMA synchronous").fetchone()[0]
        files = {row[1]: row[2] for row in cur.execute("PRAGMA database_list")}
    finally:
        cur.close()
    path = files.get("main")
    if str(mode).lower() != "wal" or sync != 2 or not path:  # 2 = FULL
        return None
    return path + "-wal"


def set_synchronous(dbapi_conn: Any, mode: str) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute(f"PRAGMA synchronous={mode}")
    finally:
        cur.close()


class WalSync:
    """The sync thread of one SQLite writer connection; `add` after every COMMIT."""

    def __init__(self, wal_path: str, report: Report):
        self.path = wal_path
        self._report = report
        self._fdatasync = os.fdatasync  # looked up here: the tests' seam
        self._fd: int | None = None
        self._cond = threading.Condition()
        self._waiting: list[list] = []
        self._busy = False
        self._stopping = False
        self.failed: BaseException | None = None
        self.syncs = 0
        self.batches = 0
        self._thread = threading.Thread(target=self._run, name="wal-sync", daemon=True)
        self._thread.start()

    def add(self, outcomes: list) -> None:
        """Outcomes of a batch whose COMMIT has returned; reported once synced."""
        with self._cond:
            self._waiting.append(outcomes)
            self._cond.notify()

    def flush(self, timeout: float = 30) -> None:
        """Wait until everything added so far has been synced and reported."""
        with self._cond:
            self._cond.wait_for(lambda: not self._waiting and not self._busy, timeout)

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
                self._busy = True
            try:
                self._sync_or_fail(batches)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _sync_or_fail(self, batches: list[list]) -> None:
        if self.failed is None:  # after a failure a later sync may "succeed" over lost pages
            try:
                self._sync()
            except OSError as exc:
                self.failed = exc
                log.critical(
                    "fdatasync of %s failed: %s; nothing more is acknowledged", self.path, exc
                )
        if self.failed is not None:
            error = SyncFailed(f"the database log could not be synced: {self.failed}")
            for outcomes in batches:
                self._report([(item, False, error) for item, _ok, _value in outcomes])
            return
        self.syncs += 1
        self.batches += len(batches)
        for outcomes in batches:
            self._report(outcomes)

    def _sync(self) -> None:
        """fdatasync the WAL. If SQLite deleted it meanwhile (the last connection closed
        it, which checkpoints it into the database and syncs that first), there is nothing
        left to sync; if it was recreated, the new file is synced too."""
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
