"""The SQLite writer's lead cache (store/lead_cache.py) never answers differently from a
SELECT: after our own writes, after another connection's commit, after a unit rolled back
to its SAVEPOINT, after a batch whose COMMIT failed. PostgreSQL writers have none.
"""

from __future__ import annotations

import concurrent.futures
from decimal import Decimal

import pytest
import sqlalchemy as sa

from postbackd import record
from postbackd.errors import InputError
from postbackd.inbound.events import parse_event
from postbackd.store import lead_cache, leads
from postbackd.store.tables import leads as leads_table
from postbackd.store.writer import Writer, _Item
from tests.helpers import new_lead, setup_campaign


@pytest.fixture
def lead(admin) -> dict:
    campaign = setup_campaign(admin)
    return new_lead(admin, campaign["id"], email="a@example.com")


def fresh(engine, tid: str) -> dict:
    """The lead as a SELECT on another connection returns it."""
    with engine.connect() as conn:
        return leads.by_transaction_id(conn, tid)


def cached_read(conn: sa.Connection, tid: str) -> dict:
    return leads.by_transaction_id(conn, tid)


def change(conn: sa.Connection, tid: str, values: dict) -> dict:
    return leads.update_lead(conn, leads.by_transaction_id(conn, tid), values)


def change_then_fail(conn: sa.Connection, tid: str, values: dict) -> None:
    change(conn, tid, values)
    raise InputError("refused", "rolled back after writing")


def poison_commit(conn: sa.Connection) -> None:
    """Leaves a foreign-key violation that SQLite checks only at COMMIT."""
    conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
    conn.exec_driver_sql(
        "INSERT INTO conversion_status_history (conversion_id, status, changed_at)"
        " VALUES ('no-such-conversion', 'x', '2026-01-01 00:00:00.000000')"
    )


def run_batch(writer: Writer, conn, *units) -> tuple[sa.Connection, list]:
    """One batch of several units, in this thread (the writer process's way)."""
    items = [_Item(fn, args, concurrent.futures.Future()) for fn, *args in units]
    conn = writer.process(conn, items)
    return conn, [i.future.exception() or i.future.result() for i in items]


# The cache is SQLite's alone: these run on that backend only, the last on PostgreSQL only.
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
postgresql_only = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


@pytest.fixture
def writer(engine):
    w = Writer(engine)
    yield w


def event(lead: dict, **params) -> object:
    return parse_event({"transaction_id": lead["transaction_id"], **params})


@sqlite_only
def test_events_hit_the_cache_and_it_matches_a_select_after_every_write(engine, writer, lead, org):
    tid = lead["transaction_id"]
    conn = None
    steps = [
        {"event_id": "page_view", "sub1": "a", "cost": "0.1", "cost_operation": "add"},
        {"event_id": "page_view", "sub1": "b", "cost": "0.2", "cost_operation": "add"},
        {"event_id": "upsell", "revenue": "3.3333", "adspend": "1.23456", "tcpa_consent": "1"},
        {"event_id": "page_view", "first_name": "Zoë", "tcpa_consent_date": "2026-11-30"},
        # SQLite keeps amounts as floats: this one comes back as ...762.8464
        {"event_id": "page_view", "min_price": "576682401762.8465"},
    ]
    for params in steps:
        conn, [result] = run_batch(writer, conn, (record.fire_event, org[0], event(lead, **params)))
        assert result["code"].endswith("_event_fired"), result
        conn, [seen] = run_batch(writer, conn, (cached_read, tid))
        assert seen == fresh(engine, tid)
    cache = lead_cache.of(conn)
    assert cache.hits >= 2 * len(steps) - 1 and cache.misses <= 1
    assert fresh(engine, tid)["cost"] == Decimal("0.3")
    writer.close(conn)


@sqlite_only
def test_a_commit_by_another_connection_is_seen(engine, writer, lead):
    tid = lead["transaction_id"]
    conn, [first] = run_batch(writer, None, (cached_read, tid))
    with engine.begin() as other:
        other.execute(
            sa.update(leads_table).where(leads_table.c.transaction_id == tid).values(sub2="x")
        )
    conn, [seen] = run_batch(writer, conn, (cached_read, tid))
    assert first["sub2"] is None and seen["sub2"] == "x"
    assert seen == fresh(engine, tid)
    writer.close(conn)


@sqlite_only
def test_a_unit_rolled_back_takes_its_writes_out_of_the_cache(engine, writer, lead):
    tid = lead["transaction_id"]
    conn, _ = run_batch(writer, None, (change, tid, {"sub3": "kept"}))
    # alone (its own transaction) and inside a batch (its own SAVEPOINT)
    conn, [failed] = run_batch(writer, conn, (change_then_fail, tid, {"sub3": "lost"}))
    assert isinstance(failed, InputError)
    conn, [ok, failed, seen] = run_batch(
        writer,
        conn,
        (change, tid, {"sub4": "kept"}),
        (change_then_fail, tid, {"sub3": "lost", "sub4": "lost"}),
        (cached_read, tid),
    )
    assert isinstance(failed, InputError)
    assert (seen["sub3"], seen["sub4"]) == ("kept", "kept")
    assert seen == fresh(engine, tid)
    writer.close(conn)


@sqlite_only
def test_a_batch_whose_commit_failed_leaves_nothing_cached(engine, writer, lead):
    tid = lead["transaction_id"]
    conn, _ = run_batch(writer, None, (cached_read, tid))
    conn, outcomes = run_batch(writer, conn, (change, tid, {"sub5": "lost"}), (poison_commit,))
    assert all(isinstance(o, Exception) for o in outcomes)  # nobody acknowledged
    conn, [seen] = run_batch(writer, conn, (cached_read, tid))
    assert seen["sub5"] is None and seen == fresh(engine, tid)
    writer.close(conn)


@postgresql_only
def test_postgresql_writers_read_every_time(engine, writer, lead):
    conn, [seen] = run_batch(writer, None, (cached_read, lead["transaction_id"]))
    assert lead_cache.of(conn) is None and seen == fresh(engine, lead["transaction_id"])
    writer.close(conn)


def test_a_connection_given_back_carries_no_cache(engine, writer, lead):
    conn, _ = run_batch(writer, None, (cached_read, lead["transaction_id"]))
    writer.close(conn)
    with engine.connect() as reader:  # may be the same pooled DB-API connection
        assert lead_cache.of(reader) is None


def test_the_cache_keeps_at_most_its_size():
    cache = lead_cache.LeadCache(size=3)
    for i in range(5):
        cache.read({"transaction_id": f"t{i}"})
    assert [cache.get(f"t{i}") for i in range(5)][:2] == [None, None]
    assert cache.get("t4") == {"transaction_id": "t4"}
