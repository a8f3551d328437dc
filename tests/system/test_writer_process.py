"""The writer in a child process (store/writer_process.py), on both databases.

What must hold: a result arrives only after the child committed; a failing unit fails
alone with its own error (codes intact); a unit that cannot cross the pipe is refused
before anything is sent; a killed child fails what was in flight (never acknowledged)
and is replaced; and every write the admin API and the ingest path make can cross.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from postbackd.api.app import create_app
from postbackd.delivery import prepare
from postbackd.errors import Conflict
from postbackd.store import orgs
from postbackd.store.tables import organizations
from postbackd.store.writer_process import ProcessWriter, WriterGone
from tests.helpers import list_deliveries, new_lead, setup_campaign, wait_final


def make_org(conn: sa.Connection, name: str) -> dict:
    return orgs.create_org(conn, name)


def refuse(conn: sa.Connection, name: str) -> None:
    orgs.create_org(conn, name)  # written, then rolled back with the unit
    raise Conflict("name_taken", f"{name} is taken")


def slow_org(conn: sa.Connection, name: str, seconds: float) -> dict:
    time.sleep(seconds)
    return orgs.create_org(conn, name)


def names(engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.select(organizations.c.name)).scalars())


@pytest.fixture
def writer(engine):
    w = ProcessWriter(engine, threads=1 if engine.dialect.name == "sqlite" else 2).start()
    yield w
    w.stop()


def test_units_commit_in_the_child_and_answer_after_it(writer, engine):
    assert writer.pid != os.getpid()
    org = writer.run_sync(make_org, "one")
    assert org["name"] == "one" and "one" in names(engine)  # visible once answered

    async def many():
        return await asyncio.gather(*(writer.run(make_org, f"org-{i}") for i in range(50)))

    made = asyncio.run(many())
    assert len({o["id"] for o in made}) == 50
    assert {f"org-{i}" for i in range(50)} <= names(engine)


def test_a_failing_unit_fails_alone_with_its_code(writer, engine):
    async def mixed():
        return await asyncio.gather(
            writer.run(make_org, "kept-1"),
            writer.run(refuse, "refused"),
            writer.run(make_org, "kept-2"),
            return_exceptions=True,
        )

    first, error, second = asyncio.run(mixed())
    assert isinstance(error, Conflict)
    assert (error.code, error.status, error.message) == ("name_taken", 409, "refused is taken")
    assert first["name"] == "kept-1" and second["name"] == "kept-2"
    assert {"kept-1", "kept-2"} <= names(engine) and "refused" not in names(engine)


def test_a_unit_that_cannot_be_pickled_is_refused_before_sending(writer, engine):
    with pytest.raises(TypeError, match="cannot send"):
        writer.run_sync(lambda conn: orgs.create_org(conn, "closure"))
    assert "closure" not in names(engine)
    assert writer.run_sync(make_org, "after")["name"] == "after"  # the pipe is still in step


def test_a_killed_child_fails_what_was_in_flight_and_is_replaced(writer, engine):
    first_pid = writer.pid
    pending = writer.submit(slow_org, "in-flight", 5.0)
    time.sleep(1.0)  # the child is inside the unit
    os.kill(first_pid, signal.SIGKILL)
    with pytest.raises(WriterGone):
        pending.result(timeout=20)
    assert "in-flight" not in names(engine)  # not committed, and not acknowledged
    deadline = time.monotonic() + 30
    while writer.pid == first_pid and time.monotonic() < deadline:
        time.sleep(0.05)
    assert writer.pid != first_pid
    deadline = time.monotonic() + 30
    while True:  # the replacement may still be starting
        try:
            assert writer.run_sync(make_org, "after-restart")["name"] == "after-restart"
            break
        except WriterGone:
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_the_admin_api_and_ingest_through_a_writer_process(
    settings, engine, org, receiver, monkeypatch
):
    """Every kind of write the API makes crosses the pipe: setup, postbacks (create, patch,
    archive, manual fire), events, lead distribution, conversion status, replay, and the
    deliveries the in-process worker claims (rendered in the child: the secret box
    crosses too) and records."""
    prepared: list[bool] = []
    usable = prepare.usable

    def spy(request, postback, now):
        prepared.append(request is not None)
        return usable(request, postback, now)

    monkeypatch.setattr(prepare, "usable", spy)
    app = create_app(
        settings.replace(worker=True), engine, run_migrations=False, writer_process=True
    )
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {org[1]}"
        assert client.patch("/api/v1/organization", json={"name": "renamed"}).status_code == 200
        key = client.post("/api/v1/api-keys", json={"name": "second"}).json()
        assert client.delete(f"/api/v1/api-keys/{key['id']}").status_code == 200
        cid = setup_campaign(client)["id"]
        events = client.get(f"/api/v1/campaigns/{cid}/events").json()["data"]
        evd = next(e for e in events if e["event_id"] == "lead_approved")
        r = client.patch(f"/api/v1/campaigns/{cid}/events/{evd['id']}", json={"aliases": ["ok"]})
        assert r.status_code == 200 and r.json()["aliases"] == ["ok"]
        clash = client.post(f"/api/v1/campaigns/{cid}/sources", json={"pid": "fb"})
        assert clash.status_code == 409 and clash.json()["code"] == "pid_taken"
        body = {
            "name": "partner",
            "trigger": "event",
            "trigger_events": ["sale_completed"],
            "url": f"{receiver.url}/pb?t={{transaction_id}}",
            "auth": {"type": "token", "token": "s3cret"},
        }
        pb = client.post("/api/v1/postbacks", json=body).json()
        assert client.patch(f"/api/v1/postbacks/{pb['id']}", json={"timeout": 5}).status_code == 200
        lead = new_lead(client, cid)
        sale = {
            "transaction_id": lead["transaction_id"],
            "event_id": "sale_completed",
            "revenue": 5,
        }
        fired = client.post(f"/api/event/global/{org[0]}", json=sale)
        assert fired.status_code == 200, fired.text
        assert fired.json()["data"]["deliveries"] == 1
        duplicate = client.post(f"/api/event/global/{org[0]}", json=sale)
        assert duplicate.status_code == 400 and duplicate.json()["code"] == "duplicate_event"
        delivery = list_deliveries(client, postback_id=pb["id"])[0]
        assert wait_final(client, delivery["id"])["state"] == "delivered"
        conversion = fired.json()["data"]["conversion_id"]
        r = client.post(f"/api/v1/conversions/{conversion}/status", json={"status": "rejected"})
        assert r.status_code == 200, r.text
        r = client.post(f"/api/v1/leads/{lead['lead_id']}/distribution", json={"status": "sold"})
        assert r.status_code == 200, r.text
        r = client.post(f"/api/v1/postbacks/{pb['id']}/fire", json={"lead_id": lead["lead_id"]})
        assert r.status_code == 202, r.text
        replay = client.post(f"/api/v1/deliveries/{delivery['id']}/replay")
        assert replay.status_code == 202 and replay.json()["replayed"] == 1
        received = receiver.wait_for(3, timeout=15)  # before the archive: they are sent
        assert len(received) == 3
        assert all(r.headers.get("Authorization") == "Bearer s3cret" for r in received)
        assert client.post(f"/api/v1/postbacks/{pb['id']}/archive").json()["archived"] is True
    # the event's delivery was handed over at ingest; the fire and the replay were claimed
    assert prepared.count(True) >= 2, prepared


# ---- started inside a running event loop (how `serve` runs it) ----------------------------


def _in_loop(engine, body):
    """Start a ProcessWriter inside a running loop (the pipe is served by that loop), run
    `body(writer)`, stop it on the loop as the server's lifespan does."""

    async def main():
        w = ProcessWriter(engine, threads=1 if engine.dialect.name == "sqlite" else 2).start()
        try:
            return await body(w)
        finally:
            w.stop()

    return asyncio.run(main())


def test_loop_mode_answers_units_from_the_loop_and_from_threads(engine):
    async def body(w):
        assert w._reader is None  # no reader thread: the loop reads the results
        made = await asyncio.gather(*(w.run(make_org, f"loop-{i}") for i in range(40)))
        in_threads = await asyncio.gather(
            *(asyncio.to_thread(w.run_sync, make_org, f"thread-{i}") for i in range(10))
        )
        return made, in_threads

    made, in_threads = _in_loop(engine, body)
    assert [o["name"] for o in made] == [f"loop-{i}" for i in range(40)]
    assert [o["name"] for o in in_threads] == [f"thread-{i}" for i in range(10)]
    assert {f"loop-{i}" for i in range(40)} | {f"thread-{i}" for i in range(10)} <= names(engine)


def test_loop_mode_keeps_failures_apart_and_refuses_run_sync_on_the_loop(engine):
    async def body(w):
        results = await asyncio.gather(
            w.run(make_org, "lm-kept"), w.run(refuse, "lm-refused"), return_exceptions=True
        )
        with pytest.raises(RuntimeError, match="use run"):
            w.run_sync(make_org, "would-deadlock")
        return results

    kept, error = _in_loop(engine, body)
    assert kept["name"] == "lm-kept" and isinstance(error, Conflict)
    assert "lm-refused" not in names(engine) and "would-deadlock" not in names(engine)


def test_loop_mode_a_killed_child_fails_in_flight_units_and_is_replaced(engine):
    async def body(w):
        first = w.pid
        pending = asyncio.ensure_future(w.run(slow_org, "lm-in-flight", 5.0))
        await asyncio.sleep(1.0)  # the child is inside the unit
        os.kill(first, signal.SIGKILL)
        with pytest.raises(WriterGone):
            await asyncio.wait_for(pending, 20)
        deadline = time.monotonic() + 30
        while True:  # a new child starts in a thread while the loop keeps serving
            try:
                return first, w.pid, await w.run(make_org, "lm-after-restart")
            except WriterGone:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)

    first, second, after = _in_loop(engine, body)
    assert second != first and after["name"] == "lm-after-restart"
    assert "lm-in-flight" not in names(engine)


def test_loop_mode_stop_answers_what_was_already_sent(engine):
    """Units queued in the same loop turn as the stop still commit and are answered."""

    async def body(w):
        tasks = [asyncio.ensure_future(w.run(make_org, f"last-{i}")) for i in range(5)]
        await asyncio.sleep(0)  # queued on the loop, not yet written to the pipe
        w.stop()  # writes them and the stop message, reads the answers until the child exits
        return await asyncio.wait_for(asyncio.gather(*tasks), 5)

    assert [r["name"] for r in _in_loop(engine, body)] == [f"last-{i}" for i in range(5)]
    assert {f"last-{i}" for i in range(5)} <= names(engine)
