"""A slow partner's backlog does not hold up other postbacks' deliveries.

The worker claims ahead of its slots, but one postback holds at most
CLAIM_AHEAD x `per_target_concurrency` of them: past that, claims skip it (and handoffs
leave its deliveries pending), so another postback's delivery, queued behind a long
backlog to a slow partner, is claimed and sent at once.
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from fastapi.testclient import TestClient

from postbackd.api.app import create_app
from postbackd.delivery.dispatcher import CLAIM_AHEAD
from postbackd.store.tables import deliveries
from tests.helpers import add_postback, fire_event, new_lead, setup_campaign, wait_until
from tests.receiver import Answer

SLOW = 20
SLOTS, PER_TARGET = 4, 1


def by_postback_and_state(engine) -> dict[tuple[str, str], int]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(deliveries.c.postback_id, deliveries.c.state, sa.func.count()).group_by(
                deliveries.c.postback_id, deliveries.c.state
            )
        )
        return {(pb, state): n for pb, state, n in rows}


def test_a_slow_postbacks_backlog_does_not_hold_up_another(settings, engine, admin, receiver):
    share = PER_TARGET * CLAIM_AHEAD
    assert share < SLOTS * CLAIM_AHEAD < SLOW  # without the share, the backlog fills the worker
    delays = {"/slow": 1.0, "/fast": 0.0}
    receiver.script = lambda req, _n: Answer(delay=delays[req.path])
    campaign = setup_campaign(admin)
    lead = new_lead(admin, campaign["id"])
    slow = add_postback(admin, receiver, "/slow", trigger_events=["page_view"])
    other_host = receiver.url.replace("127.0.0.1", "localhost")
    fast = add_postback(
        admin, receiver, trigger_events=["upsell"], url=f"{other_host}/fast", name="fast"
    )
    for _ in range(SLOW):  # no worker yet: all pending, the slow backlog first
        fire_event(admin, lead["transaction_id"], event_id="page_view")
    fire_event(admin, lead["transaction_id"], event_id="upsell", revenue=1)

    live_settings = settings.replace(
        worker=True, worker_concurrency=SLOTS, per_target_concurrency=PER_TARGET
    )
    app = create_app(live_settings, engine, run_migrations=False)
    with TestClient(app) as live:
        live.headers["Authorization"] = admin.headers["Authorization"]
        started = time.monotonic()
        wait_until(
            lambda: any(r.path == "/fast" for r in receiver.requests), timeout=5, what="/fast"
        )
        waited = time.monotonic() - started
        counts = by_postback_and_state(engine)
    assert waited < 0.9, f"the fast postback waited {waited:.2f}s behind the slow backlog"
    # The slow postback holds exactly its share; the rest of its backlog is still pending.
    held = counts.get((slow["id"], "sending"), 0) + counts.get((slow["id"], "delivered"), 0)
    assert held <= share + PER_TARGET, counts
    assert counts.get((slow["id"], "pending"), 0) >= SLOW - share - PER_TARGET, counts
    assert counts.get((fast["id"], "delivered"), 0) == 1 or counts.get((fast["id"], "sending"))
