"""Handoff: an event's deliveries written already leased to this process's worker.

The ingest transaction writes them as `sending` under the worker's handoff lease and the
worker starts them after the commit (no claim, no poll). What must hold: only deliveries
to send are leased (skipped ones are not); nothing is handed while older deliveries wait;
and a handed delivery nobody took (the process died between commit and hand-over) is
claimed by any worker once its lease runs out and is delivered, not lost.
"""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from postbackd import record
from postbackd.api.app import create_app
from postbackd.inbound.events import EventCommand
from postbackd.store.claims import Handoff
from postbackd.store.tables import deliveries
from postbackd.store.writer import Writer
from tests.helpers import add_postback, fire_event, new_lead, setup_campaign, wait_final


@pytest.fixture
def lead(admin) -> dict:
    campaign = setup_campaign(admin)
    return new_lead(admin, campaign["id"], email="ada@example.com", zip_code="10001")


def fire_with_lease(engine, org_id: str, tid: str, lease) -> dict:
    writer = Writer(engine).start()
    try:
        cmd = EventCommand(event_id="sale_completed", transaction_id=tid, revenue=Decimal(1))
        return writer.run_sync(record.fire_event, org_id, cmd, lease)
    finally:
        writer.stop()


def rows(engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(deliveries))]


def test_with_a_lease_deliveries_to_send_are_written_leased_and_returned(
    admin, engine, receiver, lead
):
    add_postback(admin, receiver, "/sent")
    add_postback(
        admin, receiver, "/skipped", filters={"zip": {"enabled": True, "codes": ["10001"]}}
    )
    before = time.time()
    result = fire_with_lease(
        engine, admin.org_id, lead["transaction_id"], Handoff("w1#handoff", 60)
    )
    assert result["data"]["deliveries"] == 1  # the skipped one is not counted
    [handed] = result["handoff"]
    by_state = {r["state"]: r for r in rows(engine)}
    assert set(by_state) == {"sending", "skipped"}
    sending = by_state["sending"]
    assert sending["id"] == handed["id"] and sending["leased_by"] == "w1#handoff"
    assert 55 < sending["lease_until"].timestamp() - before < 65
    assert sending["next_attempt_at"] is not None and sending["finished_at"] is None
    assert by_state["skipped"]["leased_by"] is None


def test_deliveries_of_postbacks_passed_over_stay_pending(admin, engine, receiver, lead):
    """A worker passing over a busy partner's postbacks takes the others' deliveries at
    once, and leaves the busy one's pending for its fair claims."""
    busy = add_postback(admin, receiver, "/busy")
    free = add_postback(admin, receiver, "/free")
    lease = Handoff("w1#handoff", 60, frozenset({busy["id"]}))
    result = fire_with_lease(engine, admin.org_id, lead["transaction_id"], lease)
    assert [d["postback_id"] for d in result["handoff"]] == [free["id"]]
    states = {r["postback_id"]: (r["state"], r["leased_by"]) for r in rows(engine)}
    assert states == {busy["id"]: ("pending", None), free["id"]: ("sending", "w1#handoff")}


def test_without_a_lease_deliveries_stay_pending(admin, engine, receiver, lead):
    add_postback(admin, receiver, "/sent")
    result = fire_with_lease(engine, admin.org_id, lead["transaction_id"], None)
    assert result["handoff"] == [] and result["data"]["deliveries"] == 1
    assert [(r["state"], r["leased_by"]) for r in rows(engine)] == [("pending", None)]


def test_a_handed_delivery_nobody_took_is_claimed_after_its_lease(settings, engine, org, receiver):
    app = create_app(settings.replace(worker=True), engine, run_migrations=False)
    with TestClient(app) as live:
        live.headers["Authorization"] = f"Bearer {org[1]}"
        campaign = setup_campaign(live)
        lead = new_lead(live, campaign["id"])
        add_postback(live, receiver, "/orphan")
        # As if the process that wrote it died before handing it over: a 1-second lease
        # held by a worker that does not exist.
        result = fire_with_lease(engine, org[0], lead["transaction_id"], Handoff("gone#handoff", 1))
        [orphan] = result["handoff"]
        assert receiver.requests == []
        final = wait_final(live, orphan["id"], timeout=20)
        assert final["state"] == "delivered" and len(final["attempts"]) == 1
        assert [r.headers["Idempotency-Key"] for r in receiver.wait_for(1)] == [orphan["id"]]


def test_the_live_worker_takes_its_handoff_and_declines_while_behind(live, receiver):
    campaign = setup_campaign(live)
    lead = new_lead(live, campaign["id"])
    pb = add_postback(live, receiver, "/live")
    dispatcher = live.app.state.services.dispatcher
    token, seconds, passed_over = dispatcher.handoff_lease()
    assert token.endswith("#handoff") and seconds == live.app.state.services.settings.lease_seconds
    assert passed_over == frozenset()
    fire_event(live, lead["transaction_id"], revenue=1)
    [delivery] = [d for d in rows(live.app.state.services.engine) if d["postback_id"] == pb["id"]]
    assert wait_final(live, delivery["id"])["state"] == "delivered"
    dispatcher._backlog = True  # as after a claim that came back full
    assert dispatcher.handoff_lease() is None


def test_a_claim_carries_what_the_worker_needs_and_the_same_context(admin, engine, receiver, lead):
    """A claim returns only the columns a worker needs (`claims.CLAIMED`), as a handed
    delivery does, and the same context (on SQLite both carry it as the stored JSON text:
    it crosses the writer process's pipe)."""
    from datetime import UTC, datetime, timedelta

    from postbackd.delivery.dispatcher import context_of
    from postbackd.store import claims

    add_postback(admin, receiver, "/claimed")
    handed = fire_with_lease(
        engine, admin.org_id, lead["transaction_id"], Handoff("w1#handoff", 0.1)
    )
    [given] = handed["handoff"]
    writer = Writer(engine).start()
    try:
        later = datetime.now(UTC) + timedelta(seconds=5)  # the handoff lease has run out
        [claimed] = writer.run_sync(claims.claim_due, "w2", 10, 60, later)
    finally:
        writer.stop()
    assert set(claimed) == set(given) == set(claims.CLAIMED)
    assert claimed["id"] == given["id"] and claimed["leased_by"] == "w2"
    if engine.dialect.name == "sqlite":
        assert isinstance(claimed["context"], str) and isinstance(given["context"], str)
    assert context_of(claimed) == context_of(given)
    assert context_of(claimed)["zip_code"] == "10001"
