"""Seed 000: the global and campaign event postbacks, every parameter and error case."""

from __future__ import annotations

import pytest

from tests.helpers import new_lead, setup_campaign


@pytest.fixture
def world(admin):
    campaign = setup_campaign(admin)
    lead = new_lead(admin, campaign["id"], first_name="Ada", state="NY")
    return {
        "org": admin.org_id,
        "cid": campaign["id"],
        "tid": lead["transaction_id"],
        "lead_id": lead["lead_id"],
    }


def post(client, world, **params):
    return client.post(f"/api/event/global/{world['org']}", json=params)


def test_conversion_event_fired_and_recorded(admin, world):
    r = post(admin, world, event_id="sale_completed", transaction_id=world["tid"], revenue=42.5)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True and body["code"] == "conversion_event_fired"
    conv = admin.get(f"/api/v1/conversions/{body['data']['conversion_id']}").json()
    assert conv["revenue"] == 42.5 and conv["payout"] == 10 and conv["event_type"] == "conversion"
    assert conv["lead_id"] == world["lead_id"] and conv["status"] == "approved"
    assert [h["status"] for h in conv["history"]] == ["approved"]


def test_tracking_event_needs_no_revenue(admin, world):
    r = post(admin, world, event_id="page_view", transaction_id=world["tid"])
    assert r.status_code == 200 and r.json()["code"] == "tracking_event_fired"


def test_alias_resolves_to_event(admin, world):
    r = post(admin, world, event_id="approve", transaction_id=world["tid"], revenue="5")
    assert r.status_code == 200 and r.json()["data"]["event_id"] == "lead_approved"


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"transaction_id": "x"}, 400, "missing_event_id"),
        ({"event_id": "", "transaction_id": "x"}, 400, "missing_event_id"),
        ({"event_id": "sale_completed"}, 400, "missing_transaction_id"),
        (
            {"event_id": "sale_completed", "transaction_id": "nope", "revenue": 1},
            400,
            "lead_not_found",
        ),
        (
            {"event_id": "unknown_event", "transaction_id": "{tid}", "revenue": 1},
            400,
            "invalid_event_id",
        ),
        ({"event_id": "sale_completed", "transaction_id": "{tid}"}, 400, "missing_revenue"),
        (
            {"event_id": "sale_completed", "transaction_id": "{tid}", "revenue": "ten"},
            400,
            "invalid_revenue",
        ),
        (
            {"event_id": "sale_completed", "transaction_id": "{tid}", "revenue": True},
            400,
            "invalid_revenue",
        ),
        (
            {"event_id": "sale_completed", "transaction_id": "{tid}", "revenue": [1]},
            400,
            "invalid_revenue",
        ),
        (
            {"event_id": "sale_completed", "transaction_id": "{tid}", "revenue": "NaN"},
            400,
            "invalid_revenue",
        ),
        ({"event_id": "page_view", "transaction_id": "{tid}", "pid": "nobody"}, 400, "invalid_pid"),
        (
            {"event_id": "page_view", "transaction_id": "{tid}", "pid": "paused"},
            403,
            "source_inactive",
        ),
        (
            {"event_id": "page_view", "transaction_id": "{tid}", "conversion_date": "2026-13-01"},
            400,
            "invalid_conversion_date",
        ),
        (
            {"event_id": "page_view", "transaction_id": "{tid}", "conversion_timezone": "CET"},
            400,
            "invalid_conversion_timezone",
        ),
        ({"event_id": "page_view", "transaction_id": "{tid}", "cost": "1,5"}, 400, "invalid_cost"),
        (
            {
                "event_id": "page_view",
                "transaction_id": "{tid}",
                "cost": 1,
                "cost_operation": "mul",
            },
            400,
            "invalid_cost_operation",
        ),
        (
            {"event_id": "page_view", "transaction_id": "{tid}", "tcpa_consent": "maybe"},
            400,
            "invalid_tcpa_consent",
        ),
        (
            {"event_id": "page_view", "transaction_id": "{tid}", "tcpa_consent_date": "yesterday"},
            400,
            "invalid_tcpa_consent_date",
        ),
        (
            {"event_id": "page_view", "transaction_id": "{tid}", "bad-name": "x"},
            400,
            "invalid_field_name",
        ),
        (
            {"event_id": "page_view", "transaction_id": "{tid}", "nested": {"a": 1}},
            400,
            "invalid_nested",
        ),
    ],
)
def test_error_cases(admin, world, params, status, code):
    params = {
        k: (v.format(tid=world["tid"]) if isinstance(v, str) else v) for k, v in params.items()
    }
    r = post(admin, world, **params)
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    assert r.json()["success"] is False and r.json()["message"]
    assert admin.get("/api/v1/conversions").json()["data"] == []


def test_duplicate_event_rejected_but_allowed_when_configured(admin, world):
    args = {"event_id": "sale_completed", "transaction_id": world["tid"], "revenue": 1}
    assert post(admin, world, **args).status_code == 200
    r = post(admin, world, **args)
    assert (r.status_code, r.json()["code"]) == (400, "duplicate_event")
    for _ in range(2):
        assert (
            post(
                admin, world, event_id="upsell", transaction_id=world["tid"], revenue=2
            ).status_code
            == 200
        )
    assert len(admin.get("/api/v1/conversions").json()["data"]) == 3


def test_get_query_string_and_form_post(admin, world):
    url = f"/api/event/global/{world['org']}"
    r = admin.get(
        url,
        params={"event_id": "sale_completed", "transaction_id": world["tid"], "revenue": "9.99"},
    )
    assert r.status_code == 200, r.text
    r = admin.post(
        url, data={"event_id": "page_view", "transaction_id": world["tid"], "sub2": "form"}
    )
    assert r.status_code == 200, r.text
    lead = admin.get(f"/api/v1/leads/{world['lead_id']}").json()
    assert lead["sub2"] == "form"


def test_lead_fields_costs_and_dates_update_the_lead(admin, world):
    params = {
        "event_id": "page_view",
        "transaction_id": world["tid"],
        "sub1": "s1",
        "adv3": "a3",
        "utm_campaign": "spring",
        "external_click_id": "ext-1",
        "tcpa_consent": "1",
        "tcpa_consent_date": "2026-11-01",
        "cost": "2.5",
        "adspend": 7,
        "min_price": "3.25",
        "email": "ada@example.com",
        "conversion_date": "2026-11-20 10:00:00",
        "conversion_timezone": "PST",
    }
    r = post(admin, world, **params)
    assert r.status_code == 200, r.text
    for op, amount, expected in (
        ("add", 1.5, 4.0),
        ("substract", 1, 3.0),
        ("subtract", 0.5, 2.5),
        ("override", 9, 9.0),
    ):
        r = post(
            admin,
            world,
            event_id="page_view",
            transaction_id=world["tid"],
            cost=amount,
            cost_operation=op,
        )
        assert r.status_code == 200
        assert admin.get(f"/api/v1/leads/{world['lead_id']}").json()["cost"] == expected
    lead = admin.get(f"/api/v1/leads/{world['lead_id']}").json()
    assert (lead["sub1"], lead["adv3"], lead["utm_campaign"], lead["external_click_id"]) == (
        "s1",
        "a3",
        "spring",
        "ext-1",
    )
    assert lead["tcpa_consent"] is True and lead["tcpa_consent_date"] == "2026-11-01"
    assert lead["adspend"] == 7 and lead["min_price"] == 3.25
    assert lead["fields"] == {"first_name": "Ada", "state": "NY", "email": "ada@example.com"}
    conv = admin.get("/api/v1/conversions", params={"event_id": "page_view"}).json()["data"][-1]
    assert conv["conversion_at"].startswith("2026-11-20T18:00:00")  # PST is UTC-8, fixed


def test_campaign_trigger_requires_matching_cid(admin, world):
    args = {"event_id": "page_view", "transaction_id": world["tid"]}
    r = admin.post("/api/event/trigger", json=args)
    assert (r.status_code, r.json()["code"]) == (400, "missing_cid")
    r = admin.post("/api/event/trigger", json={**args, "cid": "cmp_nope"})
    assert (r.status_code, r.json()["code"]) == (400, "invalid_cid")
    assert admin.post("/api/event/trigger", json={**args, "cid": world["cid"]}).status_code == 200


def test_other_organization_cannot_fire_on_lead(admin, world, engine):
    from tests.conftest import new_org

    other_org, _key = new_org(engine, "other")
    r = admin.post(
        f"/api/event/global/{other_org}",
        json={"event_id": "page_view", "transaction_id": world["tid"]},
    )
    assert (r.status_code, r.json()["code"]) == (400, "lead_not_found")


def test_repeated_values_leave_the_lead_row_alone(admin, world, engine):
    """A buyer re-posting the ids the lead already holds changes nothing on the lead (no
    rewrite, no new updated_at); a value that differs is written."""
    import sqlalchemy as sa

    from postbackd.store.tables import leads

    def stored():
        with engine.connect() as conn:
            row = conn.execute(
                sa.select(leads.c.sub1, leads.c.fields, leads.c.cost, leads.c.updated_at).where(
                    leads.c.id == world["lead_id"]
                )
            ).one()
        return row._asdict()

    same = {"event_id": "page_view", "transaction_id": world["tid"], "sub1": "s1", "cost": "2.5"}
    assert post(admin, world, **same, state="NY").status_code == 200
    first = stored()
    assert (first["sub1"], first["cost"], first["fields"]["state"]) == ("s1", 2.5, "NY")
    assert post(admin, world, **same, state="NY").status_code == 200
    assert stored() == first
    assert post(admin, world, **{**same, "sub1": "s2"}).status_code == 200
    second = stored()
    assert second["sub1"] == "s2" and second["updated_at"] > first["updated_at"]
    assert post(admin, world, **same, cost_operation="add").status_code == 200
    assert stored()["cost"] == 5.0


def test_integers_beyond_64_bits_keep_their_value(admin, world):
    """A 21-digit number in a JSON body (session data may carry anything) is stored and
    shown as that number, not as the float orjson alone would make of it; as a lead field
    it gets the clear 400 of any absurd amount."""
    big = 123456789012345678901
    r = admin.post("/api/leads", json={"cid": world["cid"], "session_data": {"account": big}})
    assert r.status_code == 201, r.text
    lead = admin.get(f"/api/v1/leads/{r.json()['data']['lead_id']}")
    assert lead.status_code == 200, lead.text
    assert '"account":123456789012345678901' in lead.text.replace(" ", "")
    assert lead.json()["session_data"] == {"account": big}
    r = post(admin, world, event_id="page_view", transaction_id=world["tid"], account=big)
    assert (r.status_code, r.json()["code"]) == (400, "invalid_account")
