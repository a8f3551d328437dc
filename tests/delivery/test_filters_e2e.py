"""Seed 001 posting filters end to end: inbound API -> planning -> real receiver.

Every test drives the public HTTP API (lead form post, global event postback, admin API)
against a server with its in-process worker, and a real HTTP receiver on 127.0.0.1. For
each filter it shows a delivery that fires (the receiver gets it) next to one that is
skipped: state `skipped`, `skip_filter`, a `skip_reason` naming the value, never sent,
counted by `GET /api/v1/stats/deliveries` under `skipped_by_filter`.

Hours and caps depend on the clock. They set the organization's timezone (PATCH
/api/v1/organization) to a fixed-offset IANA zone chosen from the real current time so
that the local wall clock reads about noon (or about 06:00 / 18:00): hour windows around
it and calendar-day boundaries are hours away, so the verdicts do not depend on when the
suite runs.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import parse_qs

from tests.helpers import new_lead as _new_lead
from tests.helpers import setup_campaign

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
FINAL = {"delivered", "dead", "skipped"}


# ---- helpers ------------------------------------------------------------------------------


def new_lead(client, cid: str, **fields) -> dict:
    """A lead through the form post; "id" is its lead id."""
    lead = _new_lead(client, cid, **fields)
    return {**lead, "id": lead["lead_id"]}


def fire(client, tid: str, event: str = "sale_completed", revenue=1, **extra) -> dict:
    """A global event postback (seed 000); the event must be accepted with 200."""
    body = {"event_id": event, "transaction_id": tid, "revenue": revenue, **extra}
    r = client.post(f"/api/event/global/{client.org_id}", json=body)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def add_postback(client, receiver, tag: str, filters: dict, **overrides) -> dict:
    """A postback to `receiver`/<tag> whose query names the lead and the conversion."""
    body = {
        "name": tag,
        "trigger": "event",
        "url": receiver.url + f"/{tag}?click={{transaction_id}}&conv={{conversion_id}}",
        "fields": {"click": "{transaction_id}"},
        "retry": {"schedule": [0.05], "max_attempts": 2},
        "filters": filters,
        **overrides,
    }
    r = client.post("/api/v1/postbacks", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def settle(client, postback_id: str, count: int, timeout: float = 15) -> list[dict]:
    """The postback's deliveries once there are `count` and all are final (bounded)."""
    deadline = time.monotonic() + timeout
    rows: list[dict] = []
    while time.monotonic() < deadline:
        rows = client.get(
            "/api/v1/deliveries", params={"postback_id": postback_id, "limit": 500}
        ).json()["data"]
        if len(rows) >= count and all(d["state"] in FINAL for d in rows):
            break
        time.sleep(0.05)
    states = [(d["state"], d["skip_reason"]) for d in rows]
    assert len(rows) == count and all(d["state"] in FINAL for d in rows), states
    return rows


def received(receiver, tag: str) -> list[dict[str, str]]:
    """Query parameters of every delivery the receiver got on /<tag>.

    Sample requests of the test endpoint (Idempotency-Key "test_…") are left out.
    """
    out = []
    for req in list(receiver.requests):
        if req.path == f"/{tag}" and not req.headers.get("Idempotency-Key", "").startswith("test_"):
            out.append({k: v[0] for k, v in parse_qs(req.query, keep_blank_values=True).items()})
    return out


def by(rows: list[dict], key: str) -> dict[str, dict]:
    out = {row[key]: row for row in rows}
    assert len(out) == len(rows), f"{key} is not unique among {rows}"
    return out


def assert_skipped(row: dict, filter_name: str, reason: str | re.Pattern) -> None:
    assert row["state"] == "skipped", row
    assert row["skip_filter"] == filter_name, row
    if isinstance(reason, re.Pattern):
        assert reason.fullmatch(row["skip_reason"] or ""), row
    else:
        assert row["skip_reason"] == reason, row
    assert row["attempts"] == 0, row


def assert_delivered(row: dict) -> None:
    assert row["state"] == "delivered", row
    assert row["skip_filter"] is None and row["skip_reason"] is None, row


def stats(client, postback_id: str | None = None) -> dict:
    params = {"postback_id": postback_id} if postback_id else {}
    r = client.get("/api/v1/stats/deliveries", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def dry_run(client, postback_id: str, lead_id: str, conversion_id: str | None = None) -> dict:
    """The test endpoint's filter explanations, by filter name, in the order given."""
    body = {"lead_id": lead_id, **({"conversion_id": conversion_id} if conversion_id else {})}
    r = client.post(f"/api/v1/postbacks/{postback_id}/test", json=body)
    assert r.status_code == 200, r.text
    return {f["filter"]: f for f in r.json()["filters"]}


def zone_at(local_hour: int) -> tuple[str, timezone]:
    """A fixed-offset IANA zone whose wall clock now shows `local_hour`:MM.

    Etc/GMT-N is UTC+N (POSIX sign); offsets from -12 to +14 exist.
    """
    offset = local_hour - datetime.now(UTC).hour
    if offset > 14:
        offset -= 24
    if offset < -12:
        offset += 24
    assert -12 <= offset <= 14, offset
    name = "Etc/GMT" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"
    return name, timezone(timedelta(hours=offset))


def set_org_timezone(client, name: str) -> None:
    r = client.patch("/api/v1/organization", json={"timezone": name})
    assert r.status_code == 200, r.text
    assert client.get("/api/v1/organization").json()["timezone"] == name


def stable_noon_zone() -> tuple[str, timezone]:
    """A zone where it is about noon: the local day does not change during a test."""
    name, tz = zone_at(12)
    assert 11 <= datetime.now(tz).hour <= 13
    return name, tz


# ---- ZIP -----------------------------------------------------------------------------------


def test_exclude_zip_skips_zip_plus_four_and_fires_others(live, receiver):
    campaign = setup_campaign(live)
    codes = ["10001", "02134"]
    pb = add_postback(live, receiver, "zip", {"zip": {"enabled": True, "codes": codes}})
    assert pb["filters"]["zip"] == {"enabled": True, "codes": codes}
    excluded = new_lead(live, campaign["id"], zip_code="10001-1234", state="NY")
    allowed = new_lead(live, campaign["id"], zip_code="94105", state="CA")
    # A JSON sender that turned "02134" into the number 2134.
    numeric = new_lead(live, campaign["id"], zip_code=2134)

    assert fire(live, excluded["transaction_id"])["deliveries"] == 0
    assert fire(live, allowed["transaction_id"])["deliveries"] == 1
    assert fire(live, numeric["transaction_id"])["deliveries"] == 0

    rows = by(settle(live, pb["id"], 3), "lead_id")
    assert_skipped(rows[excluded["id"]], "zip", "ZIP 10001 excluded")
    assert_skipped(rows[numeric["id"]], "zip", "ZIP 02134 excluded")
    assert_delivered(rows[allowed["id"]])
    assert [q["click"] for q in received(receiver, "zip")] == [allowed["transaction_id"]]

    # The deliveries list filters by skip_filter; stats count the skip by filter.
    only = live.get("/api/v1/deliveries", params={"skip_filter": "zip"}).json()["data"]
    assert {d["id"] for d in only} == {rows[excluded["id"]]["id"], rows[numeric["id"]]["id"]}
    assert live.get("/api/v1/deliveries", params={"skip_filter": "state"}).json()["data"] == []
    s = stats(live, pb["id"])
    assert s["by_state"] == {"delivered": 1, "skipped": 2}
    assert s["skipped_by_filter"] == {"zip": 2}

    # The dry run agrees, lead by lead.
    assert dry_run(live, pb["id"], excluded["id"])["zip"] == {
        "filter": "zip",
        "passed": False,
        "detail": "ZIP 10001 excluded",
        "reason": "ZIP 10001 excluded",
    }
    assert dry_run(live, pb["id"], allowed["transaction_id"])["zip"]["passed"] is True


def test_exclude_zip_config_refuses_non_five_digit_entries(live, receiver):
    for bad in ("1234", "ABCDE", "100011", "10001-1234"):
        r = live.post(
            "/api/v1/postbacks",
            json={
                "name": "bad zip",
                "trigger": "event",
                "url": receiver.url + "/x",
                "filters": {"zip": {"enabled": True, "codes": ["10001", bad]}},
            },
        )
        assert r.status_code == 422, (bad, r.text)
        body = r.json()
        assert body["code"] == "validation_error"
        assert f"'{bad}' is not a 5-digit ZIP code" in body["message"], body
        assert "filters.zip.codes" in body["message"], body
    assert live.get("/api/v1/postbacks").json()["data"] == []

    # The same check on PATCH; the stored config is unchanged.
    pb = add_postback(live, receiver, "zip", {"zip": {"enabled": True, "codes": ["10001"]}})
    r = live.patch(
        f"/api/v1/postbacks/{pb['id']}",
        json={"filters": {"zip": {"enabled": True, "codes": ["ABCDE"]}}},
    )
    assert r.status_code == 422, r.text
    assert "'ABCDE' is not a 5-digit ZIP code" in r.json()["message"]
    assert live.get(f"/api/v1/postbacks/{pb['id']}").json()["filters"]["zip"]["codes"] == ["10001"]


# ---- state ---------------------------------------------------------------------------------


def test_exclude_state_by_code_or_name(live, receiver):
    campaign = setup_campaign(live)
    pb = add_postback(
        live,
        receiver,
        "state",
        {"state": {"enabled": True, "states": ["CA", "new york", "Texas", "ca"]}},
    )
    # Full names in, USPS codes stored (and deduplicated).
    assert pb["filters"]["state"]["states"] == ["CA", "NY", "TX"]
    assert live.get(f"/api/v1/postbacks/{pb['id']}").json()["filters"]["state"]["states"] == [
        "CA",
        "NY",
        "TX",
    ]
    california = new_lead(live, campaign["id"], state="California", zip_code="94105")
    texas = new_lead(live, campaign["id"], state="tx")
    oregon = new_lead(live, campaign["id"], state="Oregon")
    no_state = new_lead(live, campaign["id"], email="x@example.com")
    moved = new_lead(live, campaign["id"], email="m@example.com")

    for lead, expected in ((california, 0), (texas, 0), (oregon, 1), (no_state, 1)):
        assert fire(live, lead["transaction_id"])["deliveries"] == expected, lead
    # The event itself brings the lead's state (an extra parameter is a lead field).
    assert fire(live, moved["transaction_id"], state="new york")["deliveries"] == 0

    rows = by(settle(live, pb["id"], 5), "lead_id")
    assert_skipped(rows[california["id"]], "state", "state CA excluded")
    assert_skipped(rows[texas["id"]], "state", "state TX excluded")
    assert_skipped(rows[moved["id"]], "state", "state NY excluded")
    assert_delivered(rows[oregon["id"]])
    assert_delivered(rows[no_state["id"]])
    assert sorted(q["click"] for q in received(receiver, "state")) == sorted(
        [oregon["transaction_id"], no_state["transaction_id"]]
    )
    assert stats(live, pb["id"])["skipped_by_filter"] == {"state": 3}

    # An unknown state is refused, naming the entry.
    r = live.patch(
        f"/api/v1/postbacks/{pb['id']}",
        json={"filters": {"state": {"enabled": True, "states": ["CA", "Narnia"]}}},
    )
    assert r.status_code == 422, r.text
    assert "'Narnia' is not a U.S. state" in r.json()["message"]


# ---- conditions ----------------------------------------------------------------------------


def test_conditions_groups_or_rules_and(live, receiver):
    campaign = setup_campaign(live)
    r = live.post(
        f"/api/v1/campaigns/{campaign['id']}/events",
        json={"event_id": "big_sale", "type": "conversion", "payout": 25, "allow_duplicates": True},
    )
    assert r.status_code == 201, r.text
    # (payout > 10 AND revenue > 50) OR (tier = gold). `payout` is the event definition's
    # payout (sale_completed pays 10, big_sale 25); `revenue` is the event's revenue.
    pb = add_postback(
        live,
        receiver,
        "money",
        {
            "conditions": {
                "enabled": True,
                "groups": [
                    [
                        {"field": "payout", "op": ">", "value": 10},
                        {"field": "revenue", "op": ">", "value": "50"},
                    ],
                    [{"field": "tier", "op": "=", "value": "gold"}],
                ],
            }
        },
        trigger_events=["big_sale", "sale_completed"],
    )
    plain = new_lead(live, campaign["id"], email="plain@example.com")
    other = new_lead(live, campaign["id"], email="other@example.com")
    gold = new_lead(live, campaign["id"], email="gold@example.com", tier="Gold")

    rich = fire(live, plain["transaction_id"], "big_sale", revenue=100)  # group 1 holds
    poor = fire(live, plain["transaction_id"], "big_sale", revenue=20)  # revenue fails, no tier
    low_payout = fire(live, other["transaction_id"], "sale_completed", revenue=100)
    tiered = fire(live, gold["transaction_id"], "sale_completed", revenue=1)  # group 2 holds
    assert [e["deliveries"] for e in (rich, poor, low_payout, tiered)] == [1, 0, 0, 1]

    rows = by(settle(live, pb["id"], 4), "conversion_id")
    assert_delivered(rows[rich["conversion_id"]])
    assert_delivered(rows[tiered["conversion_id"]])
    # ANDed rules: payout 25 > 10 held but revenue 20 > 50 did not; the missing field is shown.
    assert_skipped(
        rows[poor["conversion_id"]],
        "conditions",
        re.compile(
            r"conditions not met: revenue 20(\.0+)? > 50 failed; tier \(missing\) = gold failed"
        ),
    )
    assert_skipped(
        rows[low_payout["conversion_id"]],
        "conditions",
        re.compile(
            r"conditions not met: payout 10(\.0+)? > 10 failed; tier \(missing\) = gold failed"
        ),
    )
    got = received(receiver, "money")
    assert sorted(q["conv"] for q in got) == sorted(
        [rich["conversion_id"], tiered["conversion_id"]]
    )
    assert stats(live, pb["id"])["skipped_by_filter"] == {"conditions": 2}

    # The dry run for one conversion names the group that held.
    explained = dry_run(live, pb["id"], plain["id"], rich["conversion_id"])["conditions"]
    assert explained["passed"] is True and explained["reason"] is None
    assert re.fullmatch(
        r"group 1 holds: payout 25(\.0+)? > 10 and revenue 100(\.0+)? > 50", explained["detail"]
    ), explained


def test_conditions_on_statuses(live, receiver):
    """`lead_status != …` on distribution, `status != rejected` on the conversion."""
    campaign = setup_campaign(live)
    on_event = add_postback(
        live,
        receiver,
        "approved",
        {
            "conditions": {
                "enabled": True,
                "groups": [
                    [
                        {"field": "lead_status", "op": "!=", "value": "rejected"},
                        {"field": "status", "op": "!=", "value": "rejected"},
                    ]
                ],
            }
        },
        trigger_events=["upsell"],
    )
    on_distribution = add_postback(
        live,
        receiver,
        "sold",
        {
            "conditions": {
                "enabled": True,
                "groups": [[{"field": "lead_status", "op": "!=", "value": "unsold"}]],
            }
        },
        trigger="distribution_complete",
        url=receiver.url + "/sold?click={transaction_id}",
    )
    lead = new_lead(live, campaign["id"], email="a@example.com")
    approved = fire(live, lead["transaction_id"], "upsell", revenue=5)
    rejected = fire(live, lead["transaction_id"], "upsell", revenue=5, status="rejected")
    assert (approved["deliveries"], rejected["deliveries"]) == (1, 0)
    assert rejected["status"] == "rejected"

    rows = by(settle(live, on_event["id"], 2), "conversion_id")
    assert_delivered(rows[approved["conversion_id"]])
    assert_skipped(
        rows[rejected["conversion_id"]],
        "conditions",
        "conditions not met: status rejected != rejected failed",
    )
    assert [q["conv"] for q in received(receiver, "approved")] == [approved["conversion_id"]]

    sold = new_lead(live, campaign["id"], email="s@example.com")
    unsold = new_lead(live, campaign["id"], email="u@example.com")
    for one, status in ((sold, "sold"), (unsold, "unsold")):
        r = live.post(f"/api/v1/leads/{one['id']}/distribution", json={"status": status})
        assert r.status_code == 200, r.text
    rows = by(settle(live, on_distribution["id"], 2), "lead_id")
    assert_delivered(rows[sold["id"]])
    assert_skipped(
        rows[unsold["id"]], "conditions", "conditions not met: lead_status unsold != unsold failed"
    )
    assert [q["click"] for q in received(receiver, "sold")] == [sold["transaction_id"]]
    assert stats(live)["skipped_by_filter"] == {"conditions": 2}


# ---- hours ---------------------------------------------------------------------------------


def test_hours_follow_the_organization_timezone(live, receiver):
    campaign = setup_campaign(live)
    noon_zone, noon_tz = stable_noon_zone()
    set_org_timezone(live, noon_zone)
    today = WEEKDAYS[datetime.now(noon_tz).weekday()]
    tomorrow = WEEKDAYS[(datetime.now(noon_tz).weekday() + 1) % 7]
    # 10:00–14:00 every day (two days spelled out in full), and one only open tomorrow.
    every_day = {day: {"start": "10:00", "end": "14:00"} for day in WEEKDAYS[:5]}
    every_day |= {"Saturday": {"start": "10:00", "end": "14:00"}, "sunday": every_day["mon"]}
    daily = add_postback(live, receiver, "daily", {"hours": {"enabled": True, "days": every_day}})
    assert sorted(daily["filters"]["hours"]["days"]) == sorted(WEEKDAYS)
    not_today = add_postback(
        live,
        receiver,
        "tomorrow",
        {"hours": {"enabled": True, "days": {tomorrow: {"start": "00:00", "end": "00:00"}}}},
    )

    inside = new_lead(live, campaign["id"], email="in@example.com")
    assert fire(live, inside["transaction_id"])["deliveries"] == 1
    [fired] = settle(live, daily["id"], 1)
    assert_delivered(fired)
    [closed_day] = settle(live, not_today["id"], 1)
    assert_skipped(
        closed_day,
        "hours",
        re.compile(
            rf"outside posting hours \(none on {today}\) at {today} 1[123]:\d\d"
            + re.escape(f" {noon_zone}")
        ),
    )
    explained = dry_run(live, daily["id"], inside["id"])["hours"]
    assert explained["passed"] is True
    assert re.fullmatch(
        rf"inside posting hours \({today} 1[123]:\d\d {re.escape(noon_zone)}\)", explained["detail"]
    ), explained

    # Same postbacks, same instant; the organization moves to a zone where it is 18:00 or
    # 06:00: now is outside 10:00–14:00.
    far_hour = 18 if -12 <= 18 - datetime.now(UTC).hour <= 14 else 6
    far_zone, far_tz = zone_at(far_hour)
    set_org_timezone(live, far_zone)
    day = WEEKDAYS[datetime.now(far_tz).weekday()]
    outside = new_lead(live, campaign["id"], email="out@example.com")
    assert fire(live, outside["transaction_id"])["deliveries"] == 0
    rows = by(settle(live, daily["id"], 2), "lead_id")
    hour_re = rf"{far_hour - 1:02d}|{far_hour:02d}|{far_hour + 1:02d}"
    assert_skipped(
        rows[outside["id"]],
        "hours",
        re.compile(
            rf"outside posting hours \({day} 10:00–14:00\) at {day} ({hour_re}):\d\d"
            rf" {re.escape(far_zone)}"
        ),
    )
    assert [q["click"] for q in received(receiver, "daily")] == [inside["transaction_id"]]
    assert received(receiver, "tomorrow") == []
    assert stats(live, daily["id"])["skipped_by_filter"] == {"hours": 1}
    assert stats(live)["skipped_by_filter"] == {"hours": 3}
    assert dry_run(live, daily["id"], outside["id"])["hours"]["passed"] is False


# ---- caps ----------------------------------------------------------------------------------


def test_daily_cap_counts_fires_and_keeps_recording(live, receiver):
    campaign = setup_campaign(live)
    set_org_timezone(live, stable_noon_zone()[0])  # the local day will not roll over
    pb = add_postback(live, receiver, "capped", {"caps": {"daily": {"enabled": True, "limit": 2}}})
    lead = new_lead(live, campaign["id"], email="c@example.com")
    fired = [fire(live, lead["transaction_id"], "upsell", revenue=i + 1) for i in range(3)]
    assert [e["deliveries"] for e in fired] == [1, 1, 0]

    rows = by(settle(live, pb["id"], 3), "conversion_id")
    assert_delivered(rows[fired[0]["conversion_id"]])
    assert_delivered(rows[fired[1]["conversion_id"]])
    assert_skipped(rows[fired[2]["conversion_id"]], "caps", "daily cap 2 reached")
    assert sorted(q["conv"] for q in received(receiver, "capped")) == sorted(
        e["conversion_id"] for e in fired[:2]
    )
    s = stats(live, pb["id"])
    assert s["by_state"] == {"delivered": 2, "skipped": 1}
    assert s["skipped_by_filter"] == {"caps": 1}

    # The lead and all three conversions are recorded: the cap limits postbacks only.
    assert live.get(f"/api/v1/leads/{lead['id']}").status_code == 200
    convs = live.get("/api/v1/conversions", params={"lead_id": lead["id"]}).json()["data"]
    assert sorted(c["id"] for c in convs) == sorted(e["conversion_id"] for e in fired)
    # Another lead is capped as well: caps count fires, not leads.
    late = new_lead(live, campaign["id"], email="late@example.com")
    late_event = fire(live, late["transaction_id"], "sale_completed", revenue=9)
    assert late_event["deliveries"] == 0
    rows = by(settle(live, pb["id"], 4), "conversion_id")
    assert_skipped(rows[late_event["conversion_id"]], "caps", "daily cap 2 reached")

    explained = dry_run(live, pb["id"], late["id"])["caps"]
    assert explained == {
        "filter": "caps",
        "passed": False,
        "detail": "daily cap 2 reached",
        "reason": "daily cap 2 reached",
    }
    assert len(received(receiver, "capped")) == 2


# ---- the test endpoint's explanation ---------------------------------------------------------


def test_dry_run_explains_every_filter_in_order(live, receiver):
    campaign = setup_campaign(live)
    set_org_timezone(live, stable_noon_zone()[0])
    pb = add_postback(
        live,
        receiver,
        "all",
        {
            "zip": {"enabled": True, "codes": ["10001"]},
            "state": {"enabled": True, "states": ["California"]},
            "hours": {
                "enabled": True,
                "days": {day: {"start": "00:00", "end": "00:00"} for day in WEEKDAYS},
            },
            "conditions": {
                "enabled": True,
                "groups": [[{"field": "payout", "op": ">", "value": 5}]],
            },
            "caps": {"daily": {"enabled": True, "limit": 5}},
        },
    )
    ca = new_lead(live, campaign["id"], state="California", zip_code="94105")
    ny = new_lead(live, campaign["id"], state="NY", zip_code="10001-1234")
    ok = new_lead(live, campaign["id"], state="WA", zip_code="98101")
    events = {
        name: fire(live, lead["transaction_id"], "sale_completed", revenue=3)
        for name, lead in (("ca", ca), ("ny", ny), ("ok", ok))
    }
    rows = by(settle(live, pb["id"], 3), "lead_id")
    assert_skipped(rows[ca["id"]], "state", "state CA excluded")
    assert_skipped(rows[ny["id"]], "zip", "ZIP 10001 excluded")
    assert_delivered(rows[ok["id"]])
    assert [q["click"] for q in received(receiver, "all")] == [ok["transaction_id"]]

    r = live.post(
        f"/api/v1/postbacks/{pb['id']}/test",
        json={"lead_id": ca["id"], "conversion_id": events["ca"]["conversion_id"]},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["response"]["status"] == 200
    explained = body["filters"]
    assert [f["filter"] for f in explained] == ["zip", "state", "hours", "conditions", "caps"]
    verdict = {f["filter"]: (f["passed"], f["reason"]) for f in explained}
    assert verdict == {
        "zip": (True, None),
        "state": (False, "state CA excluded"),
        "hours": (True, None),
        "conditions": (True, None),
        # Only the one delivery that passed every other filter used up the cap.
        "caps": (True, None),
    }
    details = {f["filter"]: f["detail"] for f in explained}
    assert details["zip"] == "ZIP 94105 not excluded"
    assert details["state"] == "state CA excluded"
    assert details["caps"] == "under caps: daily 1/5"
    assert re.fullmatch(r"group 1 holds: payout 10(\.0+)? > 5", details["conditions"])

    # Without a conversion there is no payout: the conditions stop, naming the missing field.
    no_conv = {f["filter"]: f for f in dry_run(live, pb["id"], ok["transaction_id"]).values()}
    assert no_conv["conditions"]["passed"] is False
    assert no_conv["conditions"]["reason"] == ("conditions not met: payout (missing) > 5 failed")
    assert no_conv["zip"]["passed"] and no_conv["state"]["passed"]
    assert no_conv["state"]["detail"] == "state WA not excluded"

    # Skips stay final (never sent) and are counted by filter, organization-wide.
    assert stats(live)["skipped_by_filter"] == {"state": 1, "zip": 1}


def test_replay_without_a_state_leaves_skipped_deliveries_alone(live, receiver):
    """A bulk replay must not send what a posting filter stopped (it may be a legal exclusion)."""
    campaign = setup_campaign(live)
    pb = live.post(
        "/api/v1/postbacks",
        json={
            "name": "no CA",
            "trigger": "event",
            "url": receiver.url + "/pb",
            "filters": {"state": {"enabled": True, "states": ["CA"]}},
        },
    ).json()
    lead = _new_lead(live, campaign["id"], state="CA")
    r = live.post(
        f"/api/event/global/{live.org_id}",
        json={"event_id": "sale_completed", "transaction_id": lead["transaction_id"], "revenue": 1},
    )
    assert r.status_code == 200
    assert live.post("/api/v1/deliveries/replay", json={"postback_id": pb["id"]}).json() == {
        "replayed": 0
    }
    replayed = live.post(
        "/api/v1/deliveries/replay", json={"postback_id": pb["id"], "state": "skipped"}
    )
    assert replayed.json() == {"replayed": 1}
