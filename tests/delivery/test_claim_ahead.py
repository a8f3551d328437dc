"""The worker claims ahead of its request slots, and sends no more than its slots at once.

With `worker_concurrency` 2 the worker holds up to 2 x CLAIM_AHEAD deliveries (leased to
it, so no other worker takes them) while only two requests are out; the rest stay
pending for any worker. When a slot frees, the next claimed delivery goes at once.
"""

from __future__ import annotations

import sqlalchemy as sa
from fastapi.testclient import TestClient

from postbackd.api.app import create_app
from postbackd.delivery.dispatcher import CLAIM_AHEAD
from postbackd.store.tables import deliveries
from tests.helpers import add_postback, fire_event, new_lead, setup_campaign, wait_until
from tests.receiver import Answer

N = 12
SLOTS = 2


def states(engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(deliveries.c.state, sa.func.count()).group_by("state"))
        return dict(rows.all())


def test_claims_run_ahead_of_the_slots_and_the_slots_hold(settings, engine, admin, receiver):
    held = SLOTS * CLAIM_AHEAD
    assert SLOTS < held < N  # claimed ahead, and some left pending for other workers
    receiver.script = lambda _req, _n: Answer(delay=0.5)
    campaign = setup_campaign(admin)
    lead = new_lead(admin, campaign["id"])
    add_postback(admin, receiver, "/slow", trigger_events=["page_view"])
    for _ in range(N):  # no worker here: the deliveries wait, pending
        fire_event(admin, lead["transaction_id"], event_id="page_view")
    assert states(engine) == {"pending": N}

    live_settings = settings.replace(
        worker=True, worker_concurrency=SLOTS, per_target_concurrency=SLOTS
    )
    app = create_app(live_settings, engine, run_migrations=False)
    with TestClient(app) as live:
        live.headers["Authorization"] = admin.headers["Authorization"]
        wait_until(lambda: len(receiver.requests) >= SLOTS, what="the first requests")
        # Both slots are busy for half a second: the claim took `held`, two of them are out.
        assert states(engine) == {"sending": held, "pending": N - held}
        assert len(receiver.requests) == SLOTS
        wait_until(lambda: states(engine) == {"delivered": N}, timeout=30, what="every delivery")
        # every claimed delivery was counted off its target again (none stays passed over)
        dispatcher = app.state.services.dispatcher
        wait_until(lambda: dispatcher.holding() == {}, what="the worker to hold nothing")
    arrivals = sorted(r.at for r in receiver.requests)
    assert len(arrivals) == N
    # Never more than the slots at once: request k + SLOTS arrived after request k was
    # answered (0.5 s later), give or take the receiver's clock.
    assert all(b - a >= 0.45 for a, b in zip(arrivals, arrivals[SLOTS:], strict=False))
