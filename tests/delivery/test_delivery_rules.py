"""Delivery rules end to end, through the admin API to a real receiver on 127.0.0.1.

Retries (5xx, timeouts, resets, 429 + Retry-After), 4xx, dead deliveries and their attempt
log, response rules, 410 Gone, disabling after failures, the SSRF guard with an
organization allow-list, triggers and scope, manual fire, replay, the test endpoint,
stats, and tenant isolation.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from postbackd.api.app import create_app
from tests.conftest import new_org
from tests.helpers import (
    add_postback,
    fire_event,
    list_deliveries,
    new_lead,
    setup_campaign,
    wait_final,
    wait_state,
    wait_until,
)
from tests.receiver import Answer, Received

FAST = {"schedule": [0], "max_attempts": 3}  # retry at once: the worker is rung, not polled


def per_path(**answers: list[Answer]) -> Callable[[Received, int], Answer]:
    """A receiver script answering by path (`/a_b` is keyword `a_b`); a path's list is used
    in order, its last answer repeating. Unknown paths get 200."""
    seen: Counter[str] = Counter()

    def script(req: Received, _n: int) -> Answer:
        seen[req.path] += 1
        script_answers = answers.get(req.path.strip("/"), [Answer()])
        return script_answers[min(seen[req.path], len(script_answers)) - 1]

    return script


def attempts_of(client, delivery_id: str) -> list[dict]:
    return wait_final(client, delivery_id)["attempts"]


@pytest.fixture
def lead(live) -> dict:
    campaign = setup_campaign(live)
    return {"cid": campaign["id"], **new_lead(live, campaign["id"], email="ada@example.com")}


# ---- retries ----------------------------------------------------------------------------


def test_retries_5xx_reset_timeout_and_429_then_delivers(live, receiver, lead):
    receiver.script = per_path(
        pb=[
            Answer(status=500),
            Answer(status=503),
            Answer(reset=True),
            Answer(delay=0.8),  # longer than the postback's timeout
            Answer(status=429, headers={"Retry-After": "0"}),
            Answer(status=200),
        ]
    )
    pb = add_postback(live, receiver, timeout=0.3, retry={"schedule": [0], "max_attempts": 6})
    fire_event(live, lead["transaction_id"], revenue=1)
    [delivery] = wait_state(live, {"postback_id": pb["id"]}, "delivered")
    attempts = attempts_of(live, delivery["id"])
    assert [a["number"] for a in attempts] == [1, 2, 3, 4, 5, 6]
    assert [a["response_status"] for a in attempts] == [500, 503, None, None, 429, 200]
    assert [a["error_code"] for a in attempts] == [
        "http_5xx",
        "http_5xx",
        "reset",
        "timeout",
        "http_429",
        None,
    ]
    assert 300 <= attempts[3]["latency_ms"] < 800
    assert all(a["latency_ms"] > 0 for a in attempts)
    assert len(receiver.requests) == 6
    assert {r.headers["Idempotency-Key"] for r in receiver.requests} == {delivery["id"]}


def test_retry_after_is_honoured(live, receiver, lead):
    receiver.script = per_path(pb=[Answer(status=429, headers={"Retry-After": "1"}), Answer()])
    pb = add_postback(live, receiver, retry=FAST)
    fire_event(live, lead["transaction_id"], revenue=1)
    wait_state(live, {"postback_id": pb["id"]}, "delivered")
    first, second = receiver.requests
    assert second.at - first.at >= 0.95  # the schedule says 0 s, the receiver said 1 s


def test_4xx_is_final_unless_retry_on_4xx(live, receiver, lead):
    receiver.script = lambda _req, _n: Answer(status=400, body=b'{"error":"bad"}')
    plain = add_postback(live, receiver, "/plain", retry=FAST)
    retried = add_postback(live, receiver, "/retried", retry={**FAST, "retry_on_4xx": True})
    fire_event(live, lead["transaction_id"], revenue=1)
    wait_state(live, {}, "dead", count=2)
    [d_plain] = list_deliveries(live, postback_id=plain["id"])
    [d_retried] = list_deliveries(live, postback_id=retried["id"])
    assert (d_plain["attempts"], d_plain["last_status"], d_plain["last_error"]) == (
        1,
        400,
        "http_4xx",
    )
    assert [a["error_code"] for a in attempts_of(live, d_retried["id"])] == ["http_4xx"] * 3
    assert Counter(r.path for r in receiver.requests) == {"/plain": 1, "/retried": 3}


def test_dead_after_max_attempts_with_every_attempt_logged(live, receiver, lead):
    big_answer = b"E" * 20000
    receiver.script = lambda _req, _n: Answer(
        status=500, body=big_answer, headers={"X-Trace": "t-1"}
    )
    pb = add_postback(
        live,
        receiver,
        "/pb?click={transaction_id}",
        static_fields={"blob": "x" * 20000},
        retry=FAST,
    )
    fire_event(live, lead["transaction_id"], revenue=1)
    [delivery] = wait_state(live, {"postback_id": pb["id"]}, "dead")
    assert (delivery["attempts"], delivery["last_status"], delivery["last_error"]) == (
        3,
        500,
        "http_5xx",
    )
    assert delivery["finished_at"] and delivery["next_attempt_at"] is None
    attempts = attempts_of(live, delivery["id"])
    assert [a["number"] for a in attempts] == [1, 2, 3]
    limit = 8192  # settings.attempt_body_limit
    for a in attempts:
        assert a["method"] == "POST"
        assert a["url"] == f"{receiver.url}/pb?click={lead['transaction_id']}"
        assert (a["response_status"], a["error_code"]) == (500, "http_5xx")
        assert a["latency_ms"] > 0 and a["started_at"]
        assert a["response_headers"]["X-Trace"] == "t-1"
        assert a["response_body"] == "E" * limit
        assert 0 < len(a["request_body"]) <= limit
        assert a["request_body"].startswith('{"blob":"xxx')
        assert a["request_headers"]["Idempotency-Key"] == delivery["id"]
    assert len(receiver.requests) == 3 and len(receiver.requests[0].body) > 20000


# ---- response rules ---------------------------------------------------------------------


def test_success_rules_beyond_2xx(live, receiver, lead):
    receiver.script = per_path(
        json=[Answer(body=b'{"success": false}'), Answer(body=b'{"success": true}')],
        nested=[Answer(body=b'{"result": {"ok": "yes"}}')],
        contains=[Answer(body=b"NOPE")],
        not_contains=[Answer(body=b"ERROR: later"), Answer(body=b"fine")],
    )
    rules = {
        "/json": {"json_field": "success", "json_equals": True},
        "/nested": {"json_field": "result.ok", "json_equals": "yes"},
        "/contains": {"body_contains": "OK"},
        "/not_contains": {"body_not_contains": "ERROR"},
    }
    pbs = {
        path: add_postback(live, receiver, path, success=rule, retry=FAST)
        for path, rule in rules.items()
    }
    fire_event(live, lead["transaction_id"], revenue=1)
    wait_state(live, {}, "delivered", count=3)
    wait_state(live, {}, "dead", count=1)

    def codes(path: str) -> tuple[str, list]:
        [d] = list_deliveries(live, postback_id=pbs[path]["id"])
        return d["state"], [a["error_code"] for a in attempts_of(live, d["id"])]

    assert codes("/json") == ("delivered", ["body_mismatch", None])
    assert codes("/nested") == ("delivered", [None])
    assert codes("/contains") == ("dead", ["body_mismatch"] * 3)
    assert codes("/not_contains") == ("delivered", ["body_mismatch", None])


def test_410_gone_kills_the_delivery_and_disables_the_postback(live, receiver, lead):
    receiver.script = lambda _req, _n: Answer(status=410)
    pb = add_postback(live, receiver, retry=FAST)
    fire_event(live, lead["transaction_id"], revenue=1)
    [delivery] = wait_state(live, {"postback_id": pb["id"]}, "dead")
    assert (delivery["attempts"], delivery["last_error"]) == (1, "http_410")
    stored = live.get(f"/api/v1/postbacks/{pb['id']}").json()
    assert stored["enabled"] is False and "410" in stored["disabled_reason"]
    fire_event(live, lead["transaction_id"], "lead_approved", revenue=1)
    rows = list_deliveries(live, postback_id=pb["id"])
    assert len(rows) == 1, f"disabled postback still planned: {[d['state'] for d in rows]}"
    assert len(receiver.requests) == 1


def test_disabled_after_n_dead_deliveries_and_reenabling_resets(live, receiver, lead):
    receiver.script = lambda _req, _n: Answer(status=400)
    pb = add_postback(live, receiver, retry=FAST, disable_after_failures=2)
    url = f"/api/v1/postbacks/{pb['id']}"

    def upsell(n_dead: int) -> None:
        fire_event(live, lead["transaction_id"], "upsell", revenue=1)
        wait_state(live, {"postback_id": pb["id"]}, "dead", count=n_dead)

    upsell(1)
    stored = live.get(url).json()
    assert (stored["enabled"], stored["consecutive_failures"]) == (True, 1)
    upsell(2)
    stored = wait_until(
        lambda: (s := live.get(url).json())["enabled"] is False and s, what="disabled"
    )
    assert stored["disabled_reason"] and stored["consecutive_failures"] == 2
    fire_event(live, lead["transaction_id"], "upsell", revenue=1)
    rows = list_deliveries(live, postback_id=pb["id"])
    assert len(rows) == 2, f"disabled postback still planned: {[d['state'] for d in rows]}"

    r = live.patch(url, json={"enabled": True})
    assert r.status_code == 200, r.text
    assert (r.json()["enabled"], r.json()["disabled_reason"]) == (True, None)
    stored = live.get(url).json()
    assert (stored["enabled"], stored["consecutive_failures"], stored["disabled_reason"]) == (
        True,
        0,
        None,
    )
    upsell(3)  # one failure after re-enabling is not two in a row
    assert live.get(url).json()["enabled"] is True
    assert len(receiver.requests) == 3


# ---- SSRF --------------------------------------------------------------------------------


@pytest.fixture
def guarded(settings, engine, org):
    """A server that refuses loopback targets, as production does by default."""
    app = create_app(
        settings.replace(worker=True, allow_loopback_targets=False), engine, run_migrations=False
    )
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {org[1]}"
        client.org_id = org[0]
        yield client


def replay(client, delivery_id: str) -> dict:
    """Replay one delivery and wait for its new final state."""
    r = client.post(f"/api/v1/deliveries/{delivery_id}/replay")
    assert r.status_code == 202 and r.json()["replayed"] == 1, r.text
    return wait_final(client, delivery_id)  # the replay committed before the 202


@pytest.mark.parametrize("allowed", [["loopback"], ["127.0.0.1/32"]])
def test_loopback_target_refused_until_the_organization_allows_it(guarded, receiver, allowed):
    campaign = setup_campaign(guarded)
    lead = new_lead(guarded, campaign["id"])
    literal = add_postback(guarded, receiver, "/literal")
    named = add_postback(
        guarded, receiver, url=f"http://localhost:{receiver.port}/named", name="by name"
    )
    fire_event(guarded, lead["transaction_id"], revenue=1)
    dead = wait_state(guarded, {}, "dead", count=2)
    for delivery in dead:
        assert (delivery["attempts"], delivery["last_error"]) == (1, "refused_target")
        [attempt] = attempts_of(guarded, delivery["id"])
        assert attempt["error_code"] == "refused_target" and attempt["response_status"] is None
        assert "loopback" in attempt["error_detail"]
    tested = guarded.post(
        f"/api/v1/postbacks/{literal['id']}/test", json={"lead_id": lead["lead_id"]}
    )
    assert tested.status_code == 200 and tested.json()["response"]["error"] == "refused_target"
    assert receiver.requests == []  # nothing reached the receiver

    r = guarded.patch("/api/v1/organization", json={"allowed_targets": allowed})
    assert r.status_code == 200, r.text
    for pb in (literal, named):
        [delivery] = list_deliveries(guarded, postback_id=pb["id"])
        final = replay(guarded, delivery["id"])
        codes = [a["error_code"] for a in final["attempts"]]
        assert (final["state"], codes) == ("delivered", ["refused_target", None]), final
    assert sorted(r.path for r in receiver.requests) == ["/literal", "/named"]


def test_fixing_a_postback_then_replaying_uses_the_fixed_config(live, receiver, lead):
    """The operator's flow: a wrong URL kills deliveries, they fix it and replay at once."""
    receiver.script = lambda req, _n: Answer(status=404 if req.path == "/wrong" else 200)
    pb = add_postback(live, receiver, "/wrong", retry=FAST)
    fire_event(live, lead["transaction_id"], revenue=1)
    [delivery] = wait_state(live, {"postback_id": pb["id"]}, "dead")
    r = live.patch(f"/api/v1/postbacks/{pb['id']}", json={"url": receiver.url + "/right"})
    assert r.status_code == 200, r.text
    final = replay(live, delivery["id"])
    assert [a["url"] for a in final["attempts"]] == [
        receiver.url + "/wrong",
        receiver.url + "/right",
    ]
    assert final["state"] == "delivered"
    assert [r.path for r in receiver.requests] == ["/wrong", "/right"]


# ---- triggers and scope -----------------------------------------------------------------


def test_triggers_and_scope(live, receiver):
    a = setup_campaign(live)
    b = setup_campaign(live)
    sources = live.get(f"/api/v1/campaigns/{a['id']}/sources").json()["data"]
    fb = next(s["id"] for s in sources if s["pid"] == "fb")
    fields = {"email": "{email}", "trigger": "{trigger}", "status": "{status}"}
    specs = {
        "session": {"trigger": "session_start"},
        "form": {"trigger": "form_complete"},
        "dist": {"trigger": "distribution_complete"},
        "sale": {"trigger": "event", "trigger_events": ["sale_completed"]},
        "any_event": {"trigger": "event"},
        "rejected": {"trigger": "conversion_status", "trigger_statuses": ["rejected"]},
        "approved": {"trigger": "conversion_status", "trigger_statuses": ["approved"]},
        "rejected_alias": {
            "trigger": "conversion_status",
            "trigger_statuses": ["rejected"],
            "goal": "approve",
        },
        "camp_a": {"trigger": "event", "campaign_id": a["id"]},
        "camp_b": {"trigger": "event", "campaign_id": b["id"]},
        "fb": {"trigger": "event", "source_id": fb},
        "goal_alias": {"trigger": "event", "goal": "approve"},
        "goal_sale": {"trigger": "event", "goal": "sale_completed"},
    }
    ids = {
        name: add_postback(live, receiver, f"/{name}", fields=fields, retry=FAST, **spec)["id"]
        for name, spec in specs.items()
    }
    names = {pb_id: name for name, pb_id in ids.items()}
    expected: Counter[str] = Counter()

    def check(step: str, *fired: str) -> None:
        expected.update(fired)
        got = Counter(names[d["postback_id"]] for d in list_deliveries(live))
        assert got == expected, f"after {step}: got {dict(got)}, expected {dict(expected)}"

    # Session start: the click script on campaign A from source fb.
    r = live.get(f"/c/{a['id']}", params={"pid": "fb"}, follow_redirects=False)
    assert r.status_code == 302, r.text
    tid1 = r.headers["location"].split("t=", 1)[1]
    check("click", "session")
    r = live.post("/api/leads", json={"cid": a["id"], "transaction_id": tid1, "email": "x@y.z"})
    assert r.status_code == 200, r.text
    check("form completion", "form")
    r = live.post(f"/api/v1/leads/{tid1}/distribution", json={"status": "sold", "price": 3})
    assert r.status_code == 200 and len(r.json()["deliveries"]) == 1, r.text
    check("distribution", "dist")
    sale = fire_event(live, tid1, "sale_completed", revenue=10)
    check("sale on fb lead", "sale", "any_event", "approved", "camp_a", "fb", "goal_sale")
    fire_event(live, tid1, "approve", revenue=5)  # the alias of lead_approved
    check("lead_approved on fb lead", "any_event", "approved", "camp_a", "fb", "goal_alias")
    r = live.post(
        f"/api/v1/conversions/{sale['conversion_id']}/status", json={"status": "rejected"}
    )
    assert r.status_code == 200, r.text
    check("sale rejected", "rejected")

    # A lead created with its form data in one post: session start and form completion.
    lead2 = new_lead(live, a["id"], email="second@example.com")
    check("form post", "session", "form")
    fire_event(live, lead2["transaction_id"], "sale_completed", revenue=1)
    check("sale on organic lead", "sale", "any_event", "approved", "camp_a", "goal_sale")
    lead3 = new_lead(live, b["id"], email="third@example.com")
    check("form post in B", "session", "form")
    fire_event(live, lead3["transaction_id"], "sale_completed", revenue=1)
    check("sale in B", "sale", "any_event", "approved", "camp_b", "goal_sale")

    total = sum(expected.values())
    wait_state(live, {}, "delivered", count=total)
    assert Counter(r.path.strip("/") for r in receiver.wait_for(total)) == expected
    # Seed 002: no user data on session postbacks, all of it on form completion.
    bodies = [
        json.loads(r.body)
        for r in receiver.requests
        if r.path in ("/session", "/form") and json.loads(r.body)["trigger"] == "session_start"
    ]
    assert len(bodies) == 3 and all(body["email"] is None for body in bodies), bodies
    form_emails = {json.loads(r.body)["email"] for r in receiver.requests if r.path == "/form"}
    assert form_emails == {"x@y.z", "second@example.com", "third@example.com"}
    [rejected] = [json.loads(r.body) for r in receiver.requests if r.path == "/rejected"]
    assert rejected == {"email": "x@y.z", "trigger": "conversion_status", "status": "rejected"}


# ---- manual fire, replay, test endpoint, stats ---------------------------------------------


def test_manual_fire(live, receiver, lead):
    other = new_lead(live, lead["cid"])
    pb = add_postback(
        live,
        receiver,
        "/manual",
        trigger="manual",
        fields={"click": "{transaction_id}", "revenue": "{revenue}", "trigger": "{trigger}"},
        filters={"zip": {"enabled": True, "codes": ["90210"]}},
    )
    conversion = fire_event(live, lead["transaction_id"], revenue=12.5, zip="90210")
    assert list_deliveries(live) == []  # manual postbacks fire only by hand
    url = f"/api/v1/postbacks/{pb['id']}/fire"
    r = live.post(
        url, json={"lead_id": lead["lead_id"], "conversion_id": conversion["conversion_id"]}
    )
    assert r.status_code == 202, r.text
    final = wait_final(live, r.json()["delivery_id"])
    assert (final["state"], final["trigger"]) == ("delivered", "manual")
    # Posting filters do not apply to a manual fire (the lead's ZIP is excluded).
    [req] = receiver.wait_for(1)
    assert json.loads(req.body) == {
        "click": lead["transaction_id"],
        "revenue": 12.5,
        "trigger": "manual",
    }
    assert req.headers["Idempotency-Key"] == final["id"]

    r = live.post(url, json={"lead_id": "lead_nope"})
    assert r.status_code == 404 and r.json()["code"] == "lead_not_found", r.text
    r = live.post(
        url, json={"lead_id": other["lead_id"], "conversion_id": conversion["conversion_id"]}
    )
    assert r.status_code == 404 and r.json()["code"] == "conversion_not_found", r.text
    assert len(list_deliveries(live)) == 1


def test_replay_one_and_a_filtered_set_keep_their_idempotency_keys(live, receiver, lead):
    failing = {"x": True}
    receiver.script = lambda req, _n: Answer(status=500 if failing["x"] else 200)
    x = add_postback(live, receiver, "/x", retry={"schedule": [0], "max_attempts": 1})
    y = add_postback(live, receiver, "/y", retry={"schedule": [0], "max_attempts": 1})
    fire_event(live, lead["transaction_id"], "sale_completed", revenue=1)
    fire_event(live, lead["transaction_id"], "lead_approved", revenue=1)
    wait_state(live, {}, "dead", count=4)
    failing["x"] = False

    r = live.post("/api/v1/deliveries/replay", json={"state": "dead", "postback_id": x["id"]})
    assert r.status_code == 202 and r.json()["replayed"] == 2, r.text
    delivered = wait_state(live, {"postback_id": x["id"]}, "delivered", count=2)
    assert len(list_deliveries(live, postback_id=y["id"], state="dead")) == 2
    x_keys = [r.headers["Idempotency-Key"] for r in receiver.requests if r.path == "/x"]
    assert len(x_keys) == 4 and Counter(x_keys) == {d["id"]: 2 for d in delivered}
    for d in delivered:
        assert [a["response_status"] for a in attempts_of(live, d["id"])] == [500, 200]

    # One delivered delivery, replayed on request: sent again with the same key.
    one = delivered[0]["id"]
    r = live.post(f"/api/v1/deliveries/{one}/replay")
    assert r.status_code == 202 and r.json() == {"replayed": 1, "ids": [one]}, r.text
    wait_until(lambda: len(wait_final(live, one)["attempts"]) == 3, what="third attempt")
    assert receiver.requests[-1].headers["Idempotency-Key"] == one
    # And one dead delivery of the other postback.
    [dead_y, _] = list_deliveries(live, postback_id=y["id"])
    live.post(f"/api/v1/deliveries/{dead_y['id']}/replay")
    assert wait_final(live, dead_y["id"])["state"] == "delivered"
    assert receiver.requests[-1].headers["Idempotency-Key"] == dead_y["id"]
    assert len(receiver.requests) == 4 + 2 + 1 + 1


def test_test_endpoint_sends_now_and_records_nothing(live, receiver, lead):
    receiver.script = lambda _req, _n: Answer(status=201, body=b"thanks", headers={"X-R": "1"})
    pb = add_postback(
        live,
        receiver,
        "/t?c={transaction_id}",
        fields={"click": "{transaction_id}", "revenue": "{revenue}", "x": "{nope}"},
    )
    conversion = fire_event(live, lead["transaction_id"], revenue=7)
    wait_state(live, {}, "delivered")
    before = list_deliveries(live)
    r = live.post(
        f"/api/v1/postbacks/{pb['id']}/test",
        json={"lead_id": lead["transaction_id"], "conversion_id": conversion["conversion_id"]},
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["request"]["method"] == "POST"
    assert out["request"]["url"] == f"{receiver.url}/t?c={lead['transaction_id']}"
    assert json.loads(out["request"]["body"]) == {
        "click": lead["transaction_id"],
        "revenue": 7,
        "x": None,
    }
    assert out["request"]["missing"] == ["nope"]
    assert out["response"]["status"] == 201 and out["response"]["body"] == "thanks"
    assert out["response"]["headers"]["X-R"] == "1" and out["response"]["error"] is None
    assert out["response"]["latency_ms"] > 0
    sent = receiver.wait_for(2)[1]
    assert json.loads(sent.body) == json.loads(out["request"]["body"])
    assert sent.headers["Idempotency-Key"] == out["request"]["headers"]["Idempotency-Key"]
    assert list_deliveries(live) == before  # no delivery was created or changed


def test_test_endpoint_shows_an_xml16_body_as_text(live, receiver, lead):
    pb = add_postback(live, receiver, "/t", format="xml-16", fields={"who": "Zoë"})
    r = live.post(f"/api/v1/postbacks/{pb['id']}/test", json={"lead_id": lead["lead_id"]})
    assert r.status_code == 200, r.text
    assert r.json()["request"]["body"] == (
        '<?xml version="1.0" encoding="UTF-16"?><postback><who>Zoë</who></postback>'
    )


def test_stats_count_deliveries_by_state_and_skip_filter(live, receiver, lead):
    receiver.script = lambda req, _n: Answer(status=400 if req.path == "/bad" else 200)
    ok = add_postback(live, receiver, "/ok")
    add_postback(live, receiver, "/bad")
    zipped = add_postback(
        live, receiver, "/zip", filters={"zip": {"enabled": True, "codes": ["90210"]}}
    )
    fire_event(live, lead["transaction_id"], revenue=1, zip="90210")
    wait_state(live, {}, "delivered")
    wait_state(live, {}, "dead")
    [skipped] = list_deliveries(live, postback_id=zipped["id"])
    assert (skipped["state"], skipped["skip_filter"]) == ("skipped", "zip")
    assert skipped["skip_reason"]
    r = live.get("/api/v1/stats/deliveries")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "by_state": {"delivered": 1, "dead": 1, "skipped": 1},
        "skipped_by_filter": {"zip": 1},
    }
    r = live.get("/api/v1/stats/deliveries", params={"postback_id": ok["id"]})
    assert r.json() == {"by_state": {"delivered": 1}, "skipped_by_filter": {}}
    assert sorted(r.path for r in receiver.requests) == ["/bad", "/ok"]


# ---- tenant isolation ---------------------------------------------------------------------


def test_other_organization_cannot_touch_postbacks_or_deliveries(live, receiver, lead, engine):
    pb = add_postback(live, receiver, "/a", auth={"type": "token", "token": "a-secret-token"})
    fire_event(live, lead["transaction_id"], revenue=1)
    [delivery] = wait_state(live, {"postback_id": pb["id"]}, "delivered")
    before = live.get(f"/api/v1/postbacks/{pb['id']}").json()

    _org_b, key_b = new_org(engine, "beta")
    as_b = {"Authorization": f"Bearer {key_b}"}
    b_pb = live.post(
        "/api/v1/postbacks",
        json={"name": "b", "trigger": "manual", "url": receiver.url + "/b"},
        headers=as_b,
    ).json()
    lead_ref = {"lead_id": lead["lead_id"]}
    requests = [
        ("GET", f"/api/v1/postbacks/{pb['id']}", None),
        ("PATCH", f"/api/v1/postbacks/{pb['id']}", {"url": receiver.url + "/pwned"}),
        ("POST", f"/api/v1/postbacks/{pb['id']}/fire", lead_ref),
        ("POST", f"/api/v1/postbacks/{pb['id']}/test", lead_ref),
        ("POST", f"/api/v1/postbacks/{pb['id']}/archive", None),
        ("GET", f"/api/v1/deliveries/{delivery['id']}", None),
        ("POST", f"/api/v1/deliveries/{delivery['id']}/replay", None),
    ]
    wrong = []
    for method, path, body in requests:
        r = live.request(method, path, json=body, headers=as_b)
        if r.status_code != 404 or r.json().get("success") is not False:
            wrong.append(f"{method} {path} -> {r.status_code} {r.text[:200]}")
    # B's own postback cannot be fired or tested on A's lead either.
    for action in ("fire", "test"):
        r = live.post(f"/api/v1/postbacks/{b_pb['id']}/{action}", json=lead_ref, headers=as_b)
        if r.status_code not in (400, 404):
            wrong.append(f"B {action} on A's lead -> {r.status_code} {r.text[:200]}")
    assert wrong == [], "\n".join(wrong)

    listed = live.get("/api/v1/postbacks", headers=as_b).json()["data"]
    assert [p["id"] for p in listed] == [b_pb["id"]]
    assert live.get("/api/v1/deliveries", headers=as_b).json()["data"] == []
    r = live.post("/api/v1/deliveries/replay", json={"postback_id": pb["id"]}, headers=as_b)
    assert r.status_code == 202 and r.json()["replayed"] == 0, r.text
    r = live.get("/api/v1/stats/deliveries", params={"postback_id": pb["id"]}, headers=as_b)
    assert r.json() == {"by_state": {}, "skipped_by_filter": {}}

    assert live.get(f"/api/v1/postbacks/{pb['id']}").json() == before
    assert wait_final(live, delivery["id"])["attempts"][0]["number"] == 1
    assert [r.path for r in receiver.requests] == ["/a"]
