"""Small builders for tests: a campaign with events and sources, leads."""

from __future__ import annotations


def setup_campaign(admin, *, landing_url: str = "https://example.com/lp?t={transaction_id}") -> dict:
    campaign = admin.post("/api/v1/campaigns", json={"name": "Solar", "landing_url": landing_url}).json()
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
