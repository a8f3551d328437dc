"""Small builders for tests: a campaign with events and sources, leads."""

from __future__ import annotations

import time


def setup_campaign(
    admin, *, landing_url: str = "https://example.com/lp?t={transaction_id}"
) -> dict:
    campaign = admin.post(
        "/api/v1/campaigns", json={"name": "Solar", "landing_url": landing_url}
    ).json()
    cid = campaign["id"]
    events = [
        {"event_id": "sale_completed", "type": "conversion", "payout": 10},
        {"event_id": "lead_approved", "type": "conversion", "aliases": ["approve"]},
        {"event_id": "page_view", "type": "tracking", "allow_duplicates": True},
        {"event_id": "upsell", "type": "conversion", "allow_duplicates": True},
    ]
    for event in events:
        r = admin.post(f"/api/v1/campaigns/{cid}/events", json=event)
        assert r.status_code == 201, r.text
    for pid, active in (("fb", True), ("paused", False)):
        r = admin.post(f"/api/v1/campaigns/{cid}/sources", json={"pid": pid, "active": active})
        assert r.status_code == 201, r.text
    return campaign


def new_lead(client, cid: str, **fields) -> dict:
    r = client.post("/api/leads", json={"cid": cid, **fields})
    assert r.status_code == 201, r.text
    return r.json()["data"]


# ---- outbound postbacks and deliveries (live server + tests/receiver.py) -------------------

FINAL_STATES = ("delivered", "dead", "skipped")


def wait_until(check, *, timeout: float = 10, interval: float = 0.02, what: str = "condition"):
    """Poll `check()` until it returns something truthy (bounded); returns that value."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def wait_state(
    client, delivery_filter: dict, state: str, count: int = 1, timeout: float = 15
) -> list[dict]:
    """At least `count` deliveries matching the filter in `state` (bounded wait)."""

    def found():
        rows = list_deliveries(client, **delivery_filter, state=state)
        return rows if len(rows) >= count else None

    return wait_until(found, timeout=timeout, what=f"{count} {state} deliveries {delivery_filter}")


def list_deliveries(client, **filters) -> list[dict]:
    r = client.get("/api/v1/deliveries", params={"limit": 500, **filters})
    assert r.status_code == 200, r.text
    return r.json()["data"]


def wait_final(client, delivery_id: str, timeout: float = 15) -> dict:
    """One delivery, with its attempts, once it is delivered, dead or skipped."""

    def final():
        r = client.get(f"/api/v1/deliveries/{delivery_id}")
        assert r.status_code == 200, r.text
        return r.json() if r.json()["state"] in FINAL_STATES else None

    return wait_until(final, timeout=timeout, what=f"delivery {delivery_id} to finish")


def add_postback(client, receiver, path: str = "/pb", **overrides) -> dict:
    """Create a postback to the receiver (trigger event, short retries); asserts 201."""
    body = {
        "name": "to receiver",
        "trigger": "event",
        "url": receiver.url + path,
        "retry": {"schedule": [0.05], "max_attempts": 3},
        **overrides,
    }
    r = client.post("/api/v1/postbacks", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def fire_event(client, transaction_id: str, event_id: str = "sale_completed", **params) -> dict:
    """Seed 000 global event postback for the client's organization; asserts 200."""
    r = client.post(
        f"/api/event/global/{client.org_id}",
        json={"event_id": event_id, "transaction_id": transaction_id, **params},
    )
    assert r.status_code == 200, r.text
    return r.json()["data"]


def insert_pending(conn, org_id: str, postback_id: str, n: int, due_in: float = 0.0) -> list[dict]:
    """`n` pending manual deliveries of a postback written straight to the outbox, due
    `due_in` seconds from now, one millisecond apart (oldest first)."""
    from datetime import timedelta

    from postbackd.model import DeliveryState
    from postbackd.store import outbox
    from postbackd.store.tables import utcnow

    now = utcnow()
    return [
        outbox.insert_delivery(
            conn,
            {
                "org_id": org_id,
                "postback_id": postback_id,
                "trigger": "manual",
                "state": DeliveryState.PENDING.value,
                "context": {"n": i},
                "next_attempt_at": now + timedelta(seconds=due_in, milliseconds=i),
            },
        )
        for i in range(n)
    ]
