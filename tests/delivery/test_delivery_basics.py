"""End to end: event in -> delivery out to a real receiver on 127.0.0.1, retries, dead."""

from __future__ import annotations

import json
import time

from tests.helpers import new_lead, setup_campaign
from tests.receiver import Answer


def wait_state(
    client, delivery_filter: dict, state: str, count: int = 1, timeout: float = 15
) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = client.get("/api/v1/deliveries", params={**delivery_filter, "state": state}).json()[
            "data"
        ]
        if len(rows) >= count:
            return rows
        time.sleep(0.05)
    raise AssertionError(
        f"not {count} deliveries in {state}: {client.get('/api/v1/deliveries').json()}"
    )


def make_postback(client, receiver, **overrides) -> dict:
    body = {
        "name": "to source",
        "trigger": "event",
        "url": receiver.url + "/pb?click={transaction_id}&sum={revenue}",
        "fields": {"click": "{transaction_id}", "amount": "{revenue}", "mail": "{email}"},
        "static_fields": {"network": "postbackd"},
        "retry": {"schedule": [0.05, 0.05, 0.05], "max_attempts": 3},
        **overrides,
    }
    r = client.post("/api/v1/postbacks", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def test_conversion_fires_json_postback(live, receiver):
    campaign = setup_campaign(live)
    pb = make_postback(live, receiver)
    lead = new_lead(live, campaign["id"], email="ada@example.com")
    r = live.post(
        f"/api/event/global/{live.org_id}",
        json={
            "event_id": "sale_completed",
            "transaction_id": lead["transaction_id"],
            "revenue": 12.5,
        },
    )
    assert r.status_code == 200 and r.json()["data"]["deliveries"] == 1
    got = receiver.wait_for(1)
    assert got[0].method == "POST" and got[0].path == "/pb"
    assert got[0].query == f"click={lead['transaction_id']}&sum=12.5"
    assert json.loads(got[0].body) == {
        "click": lead["transaction_id"],
        "amount": 12.5,
        "mail": "ada@example.com",
        "network": "postbackd",
    }
    [delivery] = wait_state(live, {"postback_id": pb["id"]}, "delivered")
    assert got[0].headers["Idempotency-Key"] == delivery["id"]
    full = live.get(f"/api/v1/deliveries/{delivery['id']}").json()
    assert len(full["attempts"]) == 1 and full["attempts"][0]["response_status"] == 200


def test_retries_then_delivers_with_same_key(live, receiver):
    receiver.script = lambda _req, n: Answer(status=503) if n < 3 else Answer()
    campaign = setup_campaign(live)
    make_postback(live, receiver)
    lead = new_lead(live, campaign["id"])
    live.post(
        f"/api/event/global/{live.org_id}",
        json={"event_id": "sale_completed", "transaction_id": lead["transaction_id"], "revenue": 1},
    )
    [delivery] = wait_state(live, {}, "delivered")
    assert len(receiver.requests) == 3
    assert {r.headers["Idempotency-Key"] for r in receiver.requests} == {delivery["id"]}
    assert [
        a["error_code"] for a in live.get(f"/api/v1/deliveries/{delivery['id']}").json()["attempts"]
    ] == [
        "http_5xx",
        "http_5xx",
        None,
    ]


def test_dead_after_attempts_and_no_retry_on_4xx(live, receiver):
    receiver.script = lambda req, _n: Answer(status=500 if "a500" in req.path else 400)
    campaign = setup_campaign(live)
    make_postback(live, receiver, url=receiver.url + "/a500")
    make_postback(live, receiver, url=receiver.url + "/b400")
    lead = new_lead(live, campaign["id"])
    live.post(
        f"/api/event/global/{live.org_id}",
        json={"event_id": "sale_completed", "transaction_id": lead["transaction_id"], "revenue": 1},
    )
    dead = wait_state(live, {}, "dead", count=2)
    by_path = {d["last_status"]: d for d in dead}
    assert by_path[500]["attempts"] == 3 and by_path[400]["attempts"] == 1
