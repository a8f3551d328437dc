"""Validation of outbound postback configs: POST/PATCH /api/v1/postbacks.

Malformed configs get 422 `validation_error` naming the field, and nothing is stored;
unknown macros are accepted and reported as `warnings`; campaign and source ids must
belong to the caller's organization (400).
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from postbackd.api.app import create_app
from tests.conftest import new_org
from tests.helpers import setup_campaign

VALID = {
    "name": "to partner",
    "trigger": "event",
    "url": "https://partner.example.com/pb?click={transaction_id}",
}

# (what is wrong, changes to VALID, a name the error must mention)
INVALID = [
    ("no scheme", {"url": "partner.example.com/pb"}, "url"),
    ("relative URL", {"url": "/pb"}, "url"),
    ("ftp scheme", {"url": "ftp://partner.example.com/pb"}, "url"),
    ("javascript scheme", {"url": "javascript:alert(1)"}, "url"),
    ("space in host", {"url": "http://exa mple.com/pb"}, "url"),
    ("no host", {"url": "http:///pb"}, "url"),
    ("empty host with port", {"url": "http://:8080/pb"}, "url"),
    ("port out of range", {"url": "http://partner.example.com:99999/pb"}, "url"),
    ("non-numeric port", {"url": "http://partner.example.com:abc/pb"}, "url"),
    ("line break in URL", {"url": "http://partner.example.com/a\nb"}, "url"),
    ("tab in host", {"url": "http://partner.exa\tmple.com/pb"}, "url"),
    ("unknown modifier in URL", {"url": "https://p.example.com/?e={email|nope}"}, "nope"),
    ("unknown format", {"format": "yaml"}, "format"),
    ("unknown method", {"method": "DELETE"}, "method"),
    ("GET with a body", {"method": "GET", "body": {"a": "{email}"}}, "body"),
    ("header name with space", {"headers": {"X Bad": "1"}}, "headers"),
    ("header name with colon", {"headers": {"X-Bad:": "1"}}, "headers"),
    ("empty header name", {"headers": {"": "1"}}, "headers"),
    ("header value with CR/LF", {"headers": {"X-Ok": "a\r\nInjected: 1"}}, "headers"),
    ("header value with LF", {"headers": {"X-Ok": "a\nb"}}, "headers"),
    ("header value with CR", {"headers": {"X-Ok": "a\rb"}}, "headers"),
    ("reserved header Host", {"headers": {"Host": "evil.example"}}, "headers"),
    ("reserved header Content-Length", {"headers": {"content-length": "5"}}, "headers"),
    ("reserved header Transfer-Encoding", {"headers": {"Transfer-Encoding": "x"}}, "headers"),
    ("unknown modifier in header", {"headers": {"X-E": "{email|nope}"}}, "nope"),
    ("unknown modifier in fields", {"fields": {"e": "{email|bogus}"}}, "bogus"),
    ("unknown modifier in params", {"params": {"e": "{email|nope}"}}, "nope"),
    ("unknown modifier in body", {"body": {"a": ["{email|nope}"]}}, "nope"),
    ("modifier without its argument", {"fields": {"d": "{event_time|date}"}}, "date"),
    ("bad value mapping", {"fields": {"s": "{status:approved}"}}, "status"),
    ("auth header with space", {"auth": {"type": "token", "token": "t", "header": "X A"}}, "auth"),
    ("auth header reserved", {"auth": {"type": "token", "token": "t", "header": "Host"}}, "auth"),
    ("basic auth without login", {"auth": {"type": "basic", "password": "pw"}}, "auth"),
    ("basic login with colon", {"auth": {"type": "basic", "login": "a:b"}}, "auth"),
    ("unknown auth type", {"auth": {"type": "oauth"}}, "auth"),
    ("unknown trigger", {"trigger": "whenever"}, "trigger"),
    (
        "trigger_events on a non-event trigger",
        {"trigger": "form_complete", "trigger_events": ["sale_completed"]},
        "trigger_events",
    ),
    (
        "trigger_statuses on an event trigger",
        {"trigger_statuses": ["rejected"]},
        "trigger_statuses",
    ),
    (
        "unknown conversion status",
        {"trigger": "conversion_status", "trigger_statuses": ["maybe"]},
        "trigger_statuses",
    ),
    ("unknown top-level key", {"bogus": 1}, "bogus"),
    ("unknown nested key", {"retry": {"schedule": [1], "tries": 3}}, "tries"),
    ("zero timeout", {"timeout": 0}, "timeout"),
    ("zero max_attempts", {"retry": {"max_attempts": 0}}, "max_attempts"),
    ("negative retry delay", {"retry": {"schedule": [-1]}}, "schedule"),
    ("empty name", {"name": ""}, "name"),
    ("four-digit ZIP filter", {"filters": {"zip": {"enabled": True, "codes": ["1234"]}}}, "zip"),
    ("missing url", {"url": None}, "url"),
]


@pytest.fixture
def client(settings, engine):
    """Like conftest's client, but a 5xx comes back as a response the assertions can show."""
    app = create_app(settings, engine, run_migrations=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def config(**changes) -> dict:
    out = {**VALID, **changes}
    return {k: v for k, v in out.items() if v is not None}


def problem(r, status: int, code: str, mention: str) -> str | None:
    """None when `r` is the expected error naming `mention`, else what is wrong with it."""
    try:
        body = r.json()
    except ValueError:
        return f"{r.status_code} {r.text[:200]}"
    if (r.status_code, body.get("code"), body.get("success")) != (status, code, False):
        return f"{r.status_code} {r.text[:120]}"
    details = [d for d in body.get("details") or [] if isinstance(d, dict)]
    named = [body.get("message", "")] + [
        f"{d.get('field', d.get('loc'))} {d.get('message', d.get('msg'))}" for d in details
    ]
    if not any(mention in text for text in named):
        return f"does not name {mention!r}: {r.text[:300]}"
    return None


def test_malformed_configs_are_refused_with_the_field_named_and_nothing_stored(admin):
    wrong, accepted = [], []
    for what, changes, mention in INVALID:
        r = admin.post("/api/v1/postbacks", json=config(**changes))
        if error := problem(r, 422, "validation_error", mention):
            wrong.append(f"{what}: {error}")
        if r.status_code == 201:
            accepted.append(r.json()["id"])
    # Nothing but what was (wrongly) accepted is stored: a refusal writes nothing.
    stored = admin.get("/api/v1/postbacks", params={"limit": 500}).json()["data"]
    assert sorted(p["id"] for p in stored) == sorted(accepted)
    assert admin.get("/api/v1/postbacks", params={"archived": True}).json()["data"] == []
    assert wrong == [], "\n".join(wrong)


def test_a_rejected_patch_changes_nothing(admin):
    r = admin.post("/api/v1/postbacks", json=config(headers={"X-Ok": "1"}))
    assert r.status_code == 201, r.text
    url = f"/api/v1/postbacks/{r.json()['id']}"
    before = admin.get(url).json()
    wrong = []
    for what, changes, mention in INVALID:
        if what == "missing url":
            continue  # PATCH keeps what is omitted
        r = admin.patch(url, json={k: v for k, v in changes.items()})
        if error := problem(r, 422, "validation_error", mention):
            wrong.append(f"{what}: {error}")
    assert wrong == [], "\n".join(wrong)
    assert admin.get(url).json() == before


def test_unknown_macros_are_accepted_with_warnings(admin):
    r = admin.post(
        "/api/v1/postbacks",
        json=config(
            url="https://p.example.com/pb?c={transaction_id}&x={typo_feild}",
            fields={"a": "{emial}", "b": "{req.qs.anything}", "c": "{email|sha256}"},
            headers={"X-C": "{req.cookie._fbp}{headr_typo}"},
            params={"p": "{req.sessionData.a.b}"},
            body=None,
        ),
    )
    assert r.status_code == 201, r.text
    warnings = r.json()["warnings"]
    assert [w for w in warnings if "{typo_feild}" in w]
    assert [w for w in warnings if "{emial}" in w]
    assert [w for w in warnings if "{headr_typo}" in w]
    assert len(warnings) == 3, warnings
    assert "{emial}" in r.json()["fields"]["a"]  # stored as given

    body = {"data": [{"em": "{email}", "x": "{nope_in_body}"}]}
    r = admin.post("/api/v1/postbacks", json=config(body=body))
    assert r.status_code == 201, r.text
    assert len(r.json()["warnings"]) == 1 and "{nope_in_body}" in r.json()["warnings"][0]
    r = admin.post("/api/v1/postbacks", json=config())
    assert r.status_code == 201 and r.json()["warnings"] == [], r.text
    r = admin.patch(f"/api/v1/postbacks/{r.json()['id']}", json={"fields": {"z": "{zz_top}"}})
    assert r.status_code == 200 and "{zz_top}" in " ".join(r.json()["warnings"]), r.text


def test_campaign_and_source_must_belong_to_the_organization(admin, engine):
    own = setup_campaign(admin)
    own_other = admin.post("/api/v1/campaigns", json={"name": "other"}).json()
    own_sources = admin.get(f"/api/v1/campaigns/{own['id']}/sources").json()["data"]
    own_fb = next(s["id"] for s in own_sources if s["pid"] == "fb")

    _org_b, key_b = new_org(engine, "beta")
    as_b = {"Authorization": f"Bearer {key_b}"}
    theirs = admin.post("/api/v1/campaigns", json={"name": "B"}, headers=as_b).json()
    r = admin.post(f"/api/v1/campaigns/{theirs['id']}/sources", json={"pid": "fb"}, headers=as_b)
    assert r.status_code == 201, r.text
    their_fb = r.json()["id"]

    cases = [
        ("campaign of another org", {"campaign_id": theirs["id"]}, "invalid_campaign_id"),
        ("unknown campaign", {"campaign_id": "cmp_nope"}, "invalid_campaign_id"),
        ("source of another org", {"source_id": their_fb}, "invalid_source_id"),
        (
            "source of another org with own campaign",
            {"campaign_id": own["id"], "source_id": their_fb},
            "invalid_source_id",
        ),
        (
            "own source of another campaign",
            {"campaign_id": own_other["id"], "source_id": own_fb},
            "invalid_source_id",
        ),
        ("unknown source", {"source_id": "src_nope"}, "invalid_source_id"),
    ]
    wrong = []
    for what, changes, code in cases:
        r = admin.post("/api/v1/postbacks", json=config(**changes))
        if (r.status_code, r.json().get("code")) != (400, code):
            wrong.append(f"{what}: {r.status_code} {r.text[:300]}")
    assert wrong == [], "\n".join(wrong)
    assert admin.get("/api/v1/postbacks").json()["data"] == []
    assert admin.get("/api/v1/postbacks", headers=as_b).json()["data"] == []

    r = admin.post(
        "/api/v1/postbacks", json=config(campaign_id=own["id"], source_id=own_fb, goal="approve")
    )
    assert r.status_code == 201, r.text
    url = f"/api/v1/postbacks/{r.json()['id']}"
    r = admin.patch(url, json={"campaign_id": theirs["id"]})
    assert (r.status_code, r.json()["code"]) == (400, "invalid_campaign_id"), r.text
    assert admin.get(url).json()["campaign_id"] == own["id"]


def test_delivery_time_filters_need_an_offset(admin):
    for params in (
        {"created_after": "2026-01-01T00:00:00"},
        {"created_before": "0001-01-01T00:00:00+14:00"},
    ):
        r = admin.get("/api/v1/deliveries", params=params)
        assert (r.status_code, r.json()["code"]) == (422, "validation_error"), r.text
        r = admin.post("/api/v1/deliveries/replay", json=params)
        assert (r.status_code, r.json()["code"]) == (422, "validation_error"), r.text
    assert (
        admin.get(
            "/api/v1/deliveries", params={"created_after": "2026-01-01T00:00:00Z"}
        ).status_code
        == 200
    )
