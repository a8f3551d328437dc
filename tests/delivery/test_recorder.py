"""The recorder writes finished attempts in batches; a batch that fails falls back to one
unit per attempt, so one bad row costs only its own attempt. Real database, real writer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from postbackd.delivery.recorder import Finish, Recorder
from postbackd.delivery.retry import Outcome
from postbackd.model import DeliveryState
from postbackd.store.tables import deliveries, delivery_attempts
from postbackd.store.writer import Writer
from tests.helpers import insert_pending

TOKEN = "test-worker#1"


@pytest.fixture
def postback(admin) -> dict:
    r = admin.post(
        "/api/v1/postbacks",
        json={"name": "manual", "trigger": "manual", "url": "http://127.0.0.1:9/x"},
    )
    assert r.status_code == 201, r.text
    return r.json()


def leased(engine, org_id: str, postback_id: str, n: int) -> list[dict]:
    """`n` deliveries as a claim by TOKEN leaves them."""
    with engine.begin() as conn:
        rows = insert_pending(conn, org_id, postback_id, n)
        conn.execute(
            deliveries.update()
            .where(deliveries.c.id.in_([r["id"] for r in rows]))
            .values(state=DeliveryState.SENDING.value, leased_by=TOKEN)
        )
    return [{**r, "leased_by": TOKEN} for r in rows]


def finish(delivery: dict, postback_id: str) -> Finish:
    now = datetime.now(UTC)
    attempt = {
        "number": 1,
        "started_at": now,
        "method": "POST",
        "url": "http://127.0.0.1:9/x",
        "request_headers": {"Idempotency-Key": delivery["id"]},
        "request_body": "{}",
        "response_status": 200,
        "response_headers": {},
        "response_body": "ok",
        "latency_ms": 1.5,
        "error_code": None,
        "error_detail": None,
    }
    update = {
        "attempts": 1,
        "last_status": 200,
        "last_error": None,
        "missing": [],
        "state": DeliveryState.DELIVERED.value,
        "next_attempt_at": None,
        "finished_at": now,
    }
    return Finish(delivery, attempt, update, postback_id, Outcome.DELIVERED, 0, False, False)


async def record_all(writer: Writer, finishes: list[Finish]) -> list:
    recorder = Recorder(writer, "test-worker")
    return await asyncio.gather(*(recorder.record(f) for f in finishes), return_exceptions=True)


def stored(engine, ids: list[str]) -> tuple[dict[str, str], dict[str, int]]:
    states_q = sa.select(deliveries.c.id, deliveries.c.state).where(deliveries.c.id.in_(ids))
    counts_q = (
        sa.select(delivery_attempts.c.delivery_id, sa.func.count())
        .where(delivery_attempts.c.delivery_id.in_(ids))
        .group_by(delivery_attempts.c.delivery_id)
    )
    with engine.connect() as conn:
        states = {id_: state for id_, state in conn.execute(states_q)}
        counts = {id_: n for id_, n in conn.execute(counts_q)}
    return states, counts


def test_finishes_of_one_turn_are_recorded_together(engine, admin, postback):
    rows = leased(engine, admin.org_id, postback["id"], 5)
    writer = Writer(engine).start()
    try:
        results = asyncio.run(record_all(writer, [finish(r, postback["id"]) for r in rows]))
    finally:
        writer.stop()
    assert results == [False] * 5
    assert writer.batches == 1 and writer.units == 1  # one unit for all five
    states, counts = stored(engine, [r["id"] for r in rows])
    assert states == {r["id"]: "delivered" for r in rows}
    assert counts == {r["id"]: 1 for r in rows}


def test_a_bad_row_fails_alone_and_the_others_are_recorded(engine, admin, postback):
    rows = leased(engine, admin.org_id, postback["id"], 3)
    ghost = {**rows[0], "id": "dlv_does_not_exist"}  # its attempt breaks a foreign key
    finishes = [finish(rows[0], postback["id"]), finish(ghost, postback["id"])]
    finishes += [finish(r, postback["id"]) for r in rows[1:]]
    writer = Writer(engine).start()
    try:
        results = asyncio.run(record_all(writer, finishes))
    finally:
        writer.stop()
    assert results[0] is False and results[2:] == [False, False]
    assert isinstance(results[1], Exception)
    states, counts = stored(engine, [r["id"] for r in rows])
    assert states == {r["id"]: "delivered" for r in rows}
    assert counts == {r["id"]: 1 for r in rows}


def test_a_lost_lease_keeps_the_attempt_but_not_the_state(engine, admin, postback):
    """Another claim took the delivery meanwhile: the request did go out, so the attempt is
    logged, but the state belongs to the new holder."""
    [row] = leased(engine, admin.org_id, postback["id"], 1)
    stale = {**row, "leased_by": "someone-else#7"}
    writer = Writer(engine).start()
    try:
        assert asyncio.run(record_all(writer, [finish(stale, postback["id"])])) == [False]
    finally:
        writer.stop()
    states, counts = stored(engine, [row["id"]])
    assert states == {row["id"]: "sending"} and counts == {row["id"]: 1}
