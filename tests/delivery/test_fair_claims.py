"""A slow partner's backlog does not hold up other partners' deliveries.

Claims take due deliveries oldest first; a worker that already holds its share of one
target's deliveries (CLAIM_AHEAD x `per_target_concurrency`) passes that target's
postbacks over and claims the others', round-robin by postback, through the partial index
of waiting deliveries (no walk through the backlog). Real databases, real receivers.
"""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from postbackd.api.app import create_app
from postbackd.delivery.sender import target_of
from postbackd.store import claims
from postbackd.store.tables import deliveries, utcnow
from tests.helpers import (
    add_postback,
    fire_event,
    insert_pending,
    new_lead,
    setup_campaign,
    wait_until,
)
from tests.receiver import Answer, Receiver

TOKEN = "fair-test#1"
BACKLOG = 40


def manual_postback(admin, name: str) -> str:
    r = admin.post(
        "/api/v1/postbacks",
        json={"name": name, "trigger": "manual", "url": "http://127.0.0.1:9/x"},
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


def waiting(engine, org_id: str, postback_id: str, n: int, due_in: float = -1.0) -> list[str]:
    """`n` pending deliveries of a postback, due `due_in` seconds from now, oldest first."""
    with engine.begin() as conn:
        return [row["id"] for row in insert_pending(conn, org_id, postback_id, n, due_in)]


def claim(engine, limit: int, skip=(), each: int = 100, after: str = "") -> tuple[list, str]:
    with engine.begin() as conn:
        return claims.claim_passing_over(
            conn, TOKEN, limit, 60, utcnow(), frozenset(skip), each, after
        )


def ids_of(rows: list[dict]) -> set[str]:
    return {d["id"] for d in rows}


@pytest.fixture
def three(admin, engine):
    """Postbacks `slow` (6 due), `fast` (3 due), `later` (2 due in an hour), created in
    that order (postback ids sort by creation)."""
    org = admin.org_id
    ids = {name: manual_postback(admin, name) for name in ("slow", "fast", "later")}
    assert ids["slow"] < ids["fast"] < ids["later"]
    rows = {
        "slow": waiting(engine, org, ids["slow"], 6),
        "fast": waiting(engine, org, ids["fast"], 3),
        "later": waiting(engine, org, ids["later"], 2, due_in=3600),
    }
    return ids, rows


def test_a_claim_passes_over_skipped_postbacks(engine, three):
    ids, rows = three
    got, _ = claim(engine, 10, skip={ids["slow"]}, each=2)
    assert ids_of(got) == set(rows["fast"][:2])  # oldest first, at most `each`
    assert {d["leased_by"] for d in got} == {TOKEN}
    got, _ = claim(engine, 10, skip={ids["slow"]}, each=5)
    assert ids_of(got) == {rows["fast"][2]}
    # Only the skipped postback is due: nothing, and nothing changed.
    assert claim(engine, 10, skip={ids["slow"]}, each=5)[0] == []
    with engine.connect() as conn:
        states = conn.execute(
            sa.select(deliveries.c.state).where(deliveries.c.id.in_(rows["slow"] + rows["later"]))
        ).scalars()
        assert set(states) == {"pending"}


def test_claims_passing_over_go_round_robin(engine, three):
    """One delivery per claim: each claim goes on after the postback the last one stopped
    at, and round again; the postback due later is never taken."""
    ids, rows = three
    order, after = [], ""
    for _ in range(4):
        got, after = claim(engine, 1, each=1, after=after)
        order.append(got[0]["postback_id"])
    assert order == [ids["slow"], ids["fast"], ids["slow"], ids["fast"]]


def test_a_claim_walks_a_bounded_number_of_postbacks(engine, three, monkeypatch):
    """With room to visit two postbacks per claim, a claim whose walk finds none due stops
    there, and the next goes on from where it stopped."""
    ids, rows = three
    monkeypatch.setattr(claims, "WALK", 2)
    got, after = claim(engine, 10, skip={ids["slow"], ids["fast"]})
    assert (got, after) == ([], ids["fast"])  # walked slow and fast, both passed over
    got, after = claim(engine, 10, skip={ids["slow"], ids["fast"]}, after=after)
    # `later` (not due yet), round to `slow` (passed over): two visited, stop there
    assert (got, after) == ([], ids["slow"])


def test_fair_claims_still_take_expired_leases(engine, three):
    ids, rows = three
    with engine.begin() as conn:
        conn.execute(
            deliveries.update()
            .where(deliveries.c.id == rows["slow"][0])
            .values(state="sending", leased_by="dead-worker#1", lease_until=utcnow())
        )
    got, _ = claim(engine, 10, skip={ids["slow"], ids["fast"]}, each=2)
    assert ids_of(got) == {rows["slow"][0]}  # a crashed worker's, taken over


def test_target_is_host_and_port():
    assert target_of("http://127.0.0.1:8080/p?q=1") == "127.0.0.1:8080"
    assert target_of("https://user:pw@Example.COM/x") == "example.com"
    assert target_of("http://example.com?x=1") == "example.com"
    assert target_of("http://[::1]:9/x#f") == "[::1]:9"


@pytest.fixture
def fast_receiver():
    r = Receiver().start()
    yield r
    r.stop()


def test_a_slow_partners_backlog_does_not_hold_up_another(
    settings, engine, admin, receiver, fast_receiver
):
    """40 deliveries to a partner answering in 0.1 s, one request at a time, are queued
    before one to a fast partner; the fast one arrives at once, not after the backlog
    (oldest-first claims held it ~2.3 s: the worker's 16 claimed-ahead were all the slow
    partner's, and every slot that freed was refilled from its backlog)."""
    receiver.script = lambda _req, _n: Answer(delay=0.1)
    campaign = setup_campaign(admin)
    lead = new_lead(admin, campaign["id"])
    add_postback(admin, receiver, "/slow", trigger_events=["page_view"])
    add_postback(admin, fast_receiver, "/fast", trigger_events=["sale_completed"])
    for _ in range(BACKLOG):  # no worker yet: the slow partner's backlog waits, pending
        fire_event(admin, lead["transaction_id"], event_id="page_view")

    live_settings = settings.replace(worker=True, worker_concurrency=4, per_target_concurrency=1)
    app = create_app(live_settings, engine, run_migrations=False)
    with TestClient(app) as live:
        live.headers["Authorization"] = admin.headers["Authorization"]
        live.org_id = admin.org_id
        wait_until(lambda: len(receiver.requests) >= 2, what="the backlog under way")
        fired = time.monotonic()
        fire_event(live, lead["transaction_id"], event_id="sale_completed", revenue=5)
        wait_until(lambda: fast_receiver.requests, timeout=10, what="the fast delivery")
        waited = time.monotonic() - fired
        slow_done = len(receiver.requests)
        # operators see it: one target passed over, deliveries claimed
        wait_until(
            lambda: "postbackd_worker_targets_passed_over 1.0" in live.get("/metrics").text,
            what="the passed-over target in /metrics",
        )
        assert "postbackd_worker_claimed " in live.get("/metrics").text
        receiver.script = lambda _req, _n: Answer()  # let the backlog finish quickly
        wait_until(
            lambda: _states(engine) == {"delivered": BACKLOG + 1}, timeout=30, what="every delivery"
        )
        # every claimed delivery was counted off its target again (none stays passed over)
        dispatcher = app.state.services.dispatcher
        wait_until(lambda: dispatcher.holding() == {}, what="the worker to hold nothing")
    assert waited < 1.0, f"the fast partner waited {waited:.2f} s"
    assert slow_done < 12, f"the fast delivery went after {slow_done} of the backlog"
    assert len(receiver.requests) == BACKLOG and len(fast_receiver.requests) == 1


def _states(engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(deliveries.c.state, sa.func.count()).group_by("state"))
        return dict(rows.all())


def test_a_targets_share_follows_its_pace(settings):
    """A partner answering fast may hold what it answers in PACE_HORIZON (up to the whole
    claim-ahead): with the fixed minimum a lone fast partner ran dry between claims (the
    drain fell from 41% to 26% of the bare client). A slow one keeps the minimum, and a
    partner back from a quiet spell starts from it again."""
    from postbackd.delivery.dispatcher import (
        CLAIM_AHEAD,
        PACE_HORIZON,
        PACE_WINDOW,
        Dispatcher,
    )

    live = settings.replace(worker_concurrency=64, per_target_concurrency=4)
    dispatcher = Dispatcher(live, None, None, None, None)
    least, most = 4 * CLAIM_AHEAD, 64 * CLAIM_AHEAD
    assert dispatcher._share_of("fast:1") == least  # nothing known yet

    def answers(target: str, per_second: float, seconds: float, start: float) -> float:
        n = round(per_second * seconds)
        for i in range(n + 1):
            dispatcher._paced(target, start + i / per_second)
        return start + seconds

    now = answers("fast:1", 5000, 3 * PACE_WINDOW, 1000.0)
    assert dispatcher._share_of("fast:1") == most  # 5,000/s x 0.1 s = 500, capped
    answers("mid:1", 1000, 3 * PACE_WINDOW, now)
    assert abs(dispatcher._share_of("mid:1") - 1000 * PACE_HORIZON) <= 2
    answers("slow:1", 20, 1.0, now)
    assert dispatcher._share_of("slow:1") == least  # 20/s x 0.1 s = 2: the minimum
    # quiet for a minute: the first answer after it closes a long window, pace ~0
    dispatcher._paced("fast:1", now + 60)
    assert dispatcher._share_of("fast:1") == least
