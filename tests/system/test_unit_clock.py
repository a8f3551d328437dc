"""Every writer unit runs on its own clock: one instant for all the stamps it writes, and
the clock stops when the unit ends, however it ends (store/tables.py `unit_clock`)."""

from __future__ import annotations

import concurrent.futures
import time

import pytest
import sqlalchemy as sa

from postbackd import record
from postbackd.errors import InputError
from postbackd.inbound.events import parse_event
from postbackd.store import tables
from postbackd.store.claims import Handoff
from postbackd.store.tables import conversions, deliveries, utcnow
from postbackd.store.writer import Writer, _Item
from tests.helpers import new_lead, setup_campaign


def two_readings(conn: sa.Connection) -> tuple:
    first = utcnow()
    time.sleep(0.002)
    return first, utcnow()


def refuse(conn: sa.Connection) -> None:
    utcnow()
    raise InputError("refused", "a unit that fails")


def run_batch(writer: Writer, *units) -> list:
    """One batch in this thread (the writer process's way); a batch of one runs alone."""
    items = [_Item(fn, args, concurrent.futures.Future()) for fn, *args in units]
    writer.close(writer.process(None, items))
    return [i.future.exception() or i.future.result() for i in items]


@pytest.fixture
def writer(engine):
    return Writer(engine)


@pytest.mark.parametrize("size", [1, 3])
def test_a_unit_sees_one_instant_and_the_next_a_later_one(writer, size):
    before = utcnow()
    readings = run_batch(writer, *[(two_readings,)] * size)
    for first, second in readings:
        assert first == second
        assert first.tzinfo is not None
    instants = [first for first, _ in readings]
    assert before <= instants[0] and instants == sorted(instants)
    assert len(set(instants)) == size  # each unit started its own clock
    assert getattr(tables._UNIT, "now", None) is None  # and outside a unit time moves
    assert utcnow() > instants[-1]


@pytest.mark.parametrize("size", [1, 2])
def test_a_failing_unit_stops_its_clock_too(writer, size):
    outcomes = run_batch(writer, *[(refuse,)] * size)
    assert all(isinstance(o, InputError) for o in outcomes)
    assert getattr(tables._UNIT, "now", None) is None


def test_an_event_writes_its_stamps_at_one_instant(engine, writer, admin, org):
    campaign = setup_campaign(admin)
    lead = new_lead(admin, campaign["id"])
    admin.post(
        "/api/v1/postbacks",
        json={"name": "pb", "trigger": "event", "url": "http://127.0.0.1:9/pb"},
    ).raise_for_status()
    cmd = parse_event(
        {"transaction_id": lead["transaction_id"], "event_id": "page_view", "sub1": "x"}
    )
    [result] = run_batch(writer, (record.fire_event, org[0], cmd, Handoff("w#1", 30.0)))
    conversion_id = result["data"]["conversion_id"]
    with engine.connect() as conn:
        conv = conn.execute(sa.select(conversions).where(conversions.c.id == conversion_id)).one()
        dlv = conn.execute(
            sa.select(deliveries).where(deliveries.c.conversion_id == conversion_id)
        ).one()
    assert conv.created_at == conv.updated_at == conv.conversion_at == dlv.created_at
    assert (dlv.lease_until - dlv.created_at).total_seconds() == 30
