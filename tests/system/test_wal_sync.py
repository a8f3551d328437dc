"""The SQLite writer syncs its log in a thread beside it (store/walsync.py).

What must hold: an answer leaves only after an fdatasync of the WAL file that began after
its COMMIT; the writer commits the next batch meanwhile; a failed sync acknowledges
nothing, then or later; the writer's connection goes back to the pool in FULL mode; with
`synchronous=NORMAL` chosen, or the sync thread turned off, there is no sync thread. The
writer process uses it too. SQLite only: PostgreSQL syncs its own log.
"""

from __future__ import annotations

import errno
import os
import threading

import pytest
import sqlalchemy as sa

from postbackd.store import orgs, walsync
from postbackd.store.engine import make_engine
from postbackd.store.tables import organizations
from postbackd.store.writer import Writer
from postbackd.store.writer_process import ProcessWriter

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def make_org(conn: sa.Connection, name: str) -> dict:
    return orgs.create_org(conn, name)


def synchronous(conn: sa.Connection) -> int:
    return conn.exec_driver_sql("PRAGMA synchronous").scalar()


def committed(engine, name: str) -> bool:
    with engine.connect() as conn:
        query = sa.select(organizations.c.id).where(organizations.c.name == name)
        return conn.execute(query).first() is not None


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
        assert self.go.wait(10), "the test never let the sync finish"
        self.real(fd)


@pytest.fixture
def gate(monkeypatch) -> GatedSync:
    g = GatedSync()
    monkeypatch.setattr(os, "fdatasync", g)
    return g


def test_answers_wait_for_the_wal_sync_and_the_next_batch_commits_meanwhile(engine, gate):
    writer = Writer(engine).start()
    try:
        first = writer.submit(make_org, "first")
        assert gate.entered.wait(10)
        # committed (another connection sees it) but not yet answered: the sync is running
        assert committed(engine, "first") and not first.done()
        second = writer.submit(make_org, "second")
        deadline = threading.Event()
        for _ in range(100):  # the writer does not wait for the disk before the next batch
            if committed(engine, "second"):
                break
            deadline.wait(0.05)
        assert committed(engine, "second") and not second.done()
        gate.go.set()
        assert first.result(10)["name"] == "first" and second.result(10)["name"] == "second"
    finally:
        gate.go.set()
        writer.stop()
    assert gate.files and all(f.endswith("postbackd.db-wal") for f in gate.files)


def test_one_sync_answers_every_batch_waiting_for_it(engine, gate):
    writer = Writer(engine).start()
    try:
        futures = [writer.submit(make_org, "org-0")]
        assert gate.entered.wait(10)
        futures += [writer.submit(make_org, f"org-{i}") for i in range(1, 6)]
        for _ in range(100):
            if all(committed(engine, f"org-{i}") for i in range(6)):
                break
            threading.Event().wait(0.05)
        gate.go.set()
        assert [f.result(10)["name"] for f in futures] == [f"org-{i}" for i in range(6)]
    finally:
        gate.go.set()
        writer.stop()
    # the first sync, then one for everything committed while it ran (one or more batches)
    assert len(gate.files) == 2


def test_a_failed_sync_acknowledges_nothing_then_or_later(engine, monkeypatch):
    calls = []

    def broken(fd: int) -> None:
        calls.append(fd)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", broken)
    writer = Writer(engine).start()
    try:
        with pytest.raises(walsync.SyncFailed):
            writer.submit(make_org, "lost").result(10)
        # the failure is known now: later units are refused without running
        for name in ("refused", "refused too"):
            with pytest.raises(walsync.SyncFailed):
                writer.submit(make_org, name).result(10)
    finally:
        writer.stop()
    assert not committed(engine, "refused") and not committed(engine, "refused too")
    assert len(calls) == 1  # never synced again over what the failure may have lost


def test_the_writer_commits_in_normal_mode_and_gives_its_connection_back_in_full(engine):
    writer = Writer(engine).start()
    try:
        assert writer.run_sync(synchronous) == 1  # NORMAL: the sync thread syncs
    finally:
        writer.stop()
    with engine.connect() as conn:  # the pool's connections, including the writer's
        assert synchronous(conn) == 2


@pytest.mark.parametrize("how", ["NORMAL chosen", "thread off"])
def test_no_sync_thread_when_normal_is_chosen_or_it_is_turned_off(db_url, how):
    engine = make_engine(db_url, synchronous="NORMAL" if how == "NORMAL chosen" else "FULL")
    writer = Writer(engine, sync_thread=how != "thread off").start()
    try:
        assert writer.run_sync(synchronous) == (1 if how == "NORMAL chosen" else 2)
    finally:
        writer.stop()
        engine.dispose()


@pytest.mark.parametrize("sync_thread", [True, False])
def test_the_writer_process_uses_it_unless_told_not_to(engine, sync_thread):
    writer = ProcessWriter(engine, sync_thread=sync_thread).start()
    try:
        assert writer.run_sync(synchronous) == (1 if sync_thread else 2)
        assert writer.run_sync(make_org, "via child")["name"] == "via child"
    finally:
        writer.stop()
    assert committed(engine, "via child")
