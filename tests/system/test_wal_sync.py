"""The server process syncs the SQLite writer child's WAL (store/walsync.py).

What must hold: an answer arrives only after an fdatasync of the WAL file that began after
the child's COMMIT; the child commits the next units meanwhile (it does not wait for the
disk); one sync answers everything that came back while the previous one ran; a failed
sync acknowledges nothing, then or later; with the server sync off, or NORMAL chosen, the
child's own COMMIT decides as before. SQLite only: PostgreSQL syncs its own log.
"""

from __future__ import annotations

import errno
import os
import threading
import time

import pytest
import sqlalchemy as sa

from postbackd.store import orgs, walsync
from postbackd.store.engine import make_engine
from postbackd.store.tables import organizations
from postbackd.store.writer_process import ProcessWriter

sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def make_org(conn: sa.Connection, name: str) -> dict:
    return orgs.create_org(conn, name)


def synchronous(conn: sa.Connection) -> int:
    return conn.exec_driver_sql("PRAGMA synchronous").scalar()


def committed(engine, name: str) -> bool:
    with engine.connect() as conn:
        query = sa.select(organizations.c.id).where(organizations.c.name == name)
        return conn.execute(query).first() is not None


def eventually(check, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


class GatedSync:
    """os.fdatasync that records which file it synced and waits for the test's go."""

    def __init__(self) -> None:
        self.files: list[str] = []
        self.entered = threading.Event()
        self.go = threading.Event()
        self.real = os.fdatasync

    def __call__(self, fd: int) -> None:
        self.files.append(os.readlink(f"/proc/self/fd/{fd}"))
        self.entered.set()
        assert self.go.wait(20), "the test never let the sync finish"
        self.real(fd)


@pytest.fixture
def gate(monkeypatch) -> GatedSync:
    g = GatedSync()
    monkeypatch.setattr(os, "fdatasync", g)
    return g


@sqlite_only
def test_answers_wait_for_the_servers_sync_while_the_child_goes_on(engine, gate):
    writer = ProcessWriter(engine).start()
    try:
        first = writer.submit(make_org, "first")
        assert gate.entered.wait(20)
        # committed (another connection sees it), not answered: the sync is running
        assert committed(engine, "first") and not first.done()
        second = writer.submit(make_org, "second")
        assert eventually(lambda: committed(engine, "second")), "the child waited for the disk"
        assert not second.done()
        gate.go.set()
        assert first.result(20)["name"] == "first" and second.result(20)["name"] == "second"
    finally:
        gate.go.set()
        writer.stop()
    assert gate.files and all(f.endswith("postbackd.db-wal") for f in gate.files)


@sqlite_only
def test_one_sync_answers_everything_that_came_back_meanwhile(engine, gate):
    writer = ProcessWriter(engine).start()
    try:
        futures = [writer.submit(make_org, "org-0")]
        assert gate.entered.wait(20)
        futures += [writer.submit(make_org, f"org-{i}") for i in range(1, 6)]
        assert eventually(lambda: all(committed(engine, f"org-{i}") for i in range(6)))
        time.sleep(0.1)  # their results reach this process
        assert not any(f.done() for f in futures)
        gate.go.set()
        assert [f.result(20)["name"] for f in futures] == [f"org-{i}" for i in range(6)]
    finally:
        gate.go.set()
        writer.stop()
    assert len(gate.files) == 2  # the first sync, then one for the five that came meanwhile


@sqlite_only
def test_a_failed_sync_acknowledges_nothing_then_or_later(engine, monkeypatch):
    calls = []

    def broken(fd: int) -> None:
        calls.append(fd)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", broken)
    writer = ProcessWriter(engine).start()
    try:
        with pytest.raises(walsync.SyncFailed):
            writer.submit(make_org, "lost").result(20)
        for name in ("refused", "refused too"):  # the failure is known: refused unsent
            with pytest.raises(walsync.SyncFailed) as raised:
                writer.submit(make_org, name).result(20)
            assert raised.value.status == 503
    finally:
        writer.stop()
    assert not committed(engine, "refused") and not committed(engine, "refused too")
    assert len(calls) == 1  # never synced again over what the failure may have lost


@sqlite_only
@pytest.mark.parametrize(
    ("server_sync", "chosen", "child_mode", "syncs_here"),
    [(True, "FULL", 1, True), (False, "FULL", 2, False), (True, "NORMAL", 1, False)],
)
def test_who_syncs(db_url, monkeypatch, server_sync, chosen, child_mode, syncs_here):
    calls = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: calls.append(fd) or real(fd))
    engine = make_engine(db_url, synchronous=chosen)
    writer = ProcessWriter(engine, synchronous=chosen, server_sync=server_sync).start()
    try:
        assert writer.run_sync(synchronous) == child_mode
        assert writer.run_sync(make_org, "via child")["name"] == "via child"
    finally:
        writer.stop()
        engine.dispose()
    assert bool(calls) is syncs_here


def test_only_sqlite_files_at_full_are_synced_by_the_server():
    assert walsync.wal_to_sync("/data/p.db", "FULL") == "/data/p.db-wal"
    assert walsync.wal_to_sync("p.db", "full") == os.path.abspath("p.db") + "-wal"
    for database, mode in ((":memory:", "FULL"), ("", "FULL"), (None, "FULL"), ("p.db", "NORMAL")):
        assert walsync.wal_to_sync(database, mode) is None
    assert walsync.wal_to_sync("p.db", "EXTRA") is None
