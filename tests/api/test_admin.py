"""Admin API under /api/v1: organization, API keys, campaigns, event definitions, sources,
leads (click script, form post, search, distribution), conversions (filters, cursor paging,
status history) and tenant isolation between two organizations."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from postbackd.api.app import create_app
from postbackd.store.tables import conversion_status_history
from tests.conftest import new_org
from tests.helpers import new_lead, setup_campaign


@pytest.fixture
def client(settings, engine):
    """Like conftest's client, but a 5xx comes back as a response the assertions can show."""
    app = create_app(settings, engine, run_migrations=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_error(r, status: int, code: str) -> dict:
    assert (r.status_code, r.json().get("code")) == (status, code), r.text
    body = r.json()
    assert body["success"] is False and body["message"], body
    return body


def newest_first(*ids: str) -> list[str]:
    """List order: ids are time-sortable, newest first (ties within a millisecond by id)."""
    return sorted(ids, reverse=True)


def fire(client, org_id: str, **params):
    r = client.post(f"/api/event/global/{org_id}", json=params)
    assert r.status_code == 200, r.text
    return r.json()["data"]


# ---- organization ---------------------------------------------------------------------------


def test_read_organization(admin):
    org = admin.get("/api/v1/organization").json()
    assert org["id"] == admin.org_id and org["name"] == "acme"
    assert (org["timezone"], org["currency"], org["allowed_targets"]) == ("UTC", "USD", [])


def test_update_organization(admin):
    changes = {
        "name": "Acme Leads",
        "timezone": "America/New_York",
        "currency": "EUR",
        "allowed_targets": ["10.0.0.0/8", "loopback", "192.168.1.5", "2001:db8::/32"],
    }
    r = admin.patch("/api/v1/organization", json=changes)
    assert r.status_code == 200, r.text
    org = admin.get("/api/v1/organization").json()
    assert (org["name"], org["timezone"], org["currency"]) == (
        "Acme Leads",
        "America/New_York",
        "EUR",
    )
    assert org["allowed_targets"] == ["10.0.0.0/8", "loopback", "192.168.1.5/32", "2001:db8::/32"]
    # A partial update leaves the other fields alone.
    assert admin.patch("/api/v1/organization", json={"currency": "GBP"}).status_code == 200
    org = admin.get("/api/v1/organization").json()
    assert (org["name"], org["timezone"], org["currency"]) == (
        "Acme Leads",
        "America/New_York",
        "GBP",
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"timezone": "+02:00"}, "timezone"),
        ({"timezone": "PST"}, "timezone"),
        ({"timezone": ""}, "timezone"),
        ({"currency": "usd"}, "currency"),
        ({"currency": "EURO"}, "currency"),
        ({"currency": "US"}, "currency"),
        ({"currency": "U$D"}, "currency"),
        ({"allowed_targets": ["not-a-network"]}, "allowed_targets"),
        ({"allowed_targets": ["10.0.0.0/33"]}, "allowed_targets"),
        ({"allowed_targets": ["localhost"]}, "allowed_targets"),
        ({"allowed_targets": "10.0.0.0/8"}, "allowed_targets"),
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"id": "org_other"}, "id"),
    ],
)
def test_update_organization_validation(admin, changes, field):
    before = admin.get("/api/v1/organization").json()
    r = admin.patch("/api/v1/organization", json=changes)
    body = assert_error(r, 422, "validation_error")
    assert any(d["field"].startswith(field) for d in body["details"]), body
    assert field in body["message"], body
    assert admin.get("/api/v1/organization").json() == before


# ---- API keys ---------------------------------------------------------------------------------


def test_missing_api_key(client):
    for path in (
        "/api/v1/organization",
        "/api/v1/campaigns",
        "/api/v1/leads",
        "/api/v1/conversions",
    ):
        assert_error(client.get(path), 401, "missing_api_key")
    assert_error(client.post("/api/v1/campaigns", json={"name": "x"}), 401, "missing_api_key")
    assert client.get("/api/v1/campaigns").status_code == 401


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer pbk_not-a-real-key"},
        {"X-API-Key": "pbk_not-a-real-key"},
        {"Authorization": "Bearer ' OR 1=1 --"},
    ],
)
def test_invalid_api_key(client, org, headers):
    assert_error(client.get("/api/v1/organization", headers=headers), 401, "invalid_api_key")
    r = client.post("/api/v1/campaigns", json={"name": "x"}, headers=headers)
    assert_error(r, 401, "invalid_api_key")
    ok = client.get("/api/v1/campaigns", headers=bearer(org[1]))
    assert ok.status_code == 200 and ok.json()["data"] == []


def test_x_api_key_header_works(client, org):
    r = client.get("/api/v1/organization", headers={"X-API-Key": org[1]})
    assert r.status_code == 200 and r.json()["id"] == org[0]


def test_key_mints_key_for_own_org_and_revoked_key_stops_working(admin, client):
    original = admin.headers["Authorization"].removeprefix("Bearer ")
    responses = []
    r = admin.post("/api/v1/api-keys", json={"name": "ci"})
    responses.append(r)
    assert r.status_code == 201, r.text
    minted = r.json()
    new_key = minted["key"]
    assert minted["org_id"] == admin.org_id and minted["name"] == "ci"
    assert new_key != original and new_key.startswith(minted["prefix"])

    r = client.get("/api/v1/organization", headers=bearer(new_key))
    responses.append(r)
    assert r.status_code == 200 and r.json()["id"] == admin.org_id
    r = client.post("/api/v1/campaigns", json={"name": "made by ci"}, headers=bearer(new_key))
    assert r.status_code == 201 and r.json()["org_id"] == admin.org_id

    r = admin.get("/api/v1/api-keys")
    responses.append(r)
    keys = r.json()["data"]
    assert {k["id"] for k in keys} >= {minted["id"]} and len(keys) == 2
    assert all(k["org_id"] == admin.org_id for k in keys)
    assert all("key" not in k for k in keys), keys

    r = admin.delete(f"/api/v1/api-keys/{minted['id']}")
    responses.append(r)
    assert r.status_code == 200, r.text
    assert_error(
        client.get("/api/v1/organization", headers=bearer(new_key)), 401, "invalid_api_key"
    )
    r = client.post("/api/v1/api-keys", json={"name": "again"}, headers=bearer(new_key))
    assert_error(r, 401, "invalid_api_key")
    # The key that did the revoking still works; revoking twice is a 404.
    assert admin.get("/api/v1/organization").status_code == 200
    assert_error(admin.delete(f"/api/v1/api-keys/{minted['id']}"), 404, "api_key_not_found")
    r = admin.get("/api/v1/api-keys")
    responses.append(r)
    revoked = next(k for k in r.json()["data"] if k["id"] == minted["id"])
    assert revoked["revoked_at"] is not None

    hashes = {hashlib.sha256(k.encode()).hexdigest() for k in (original, new_key)}
    for resp in responses:
        assert "key_hash" not in resp.text, resp.text
        assert not any(h in resp.text for h in hashes), resp.text
    # The full key is shown once, in the minting answer, and never again.
    assert all(new_key not in resp.text for resp in responses[1:])
    assert all(original not in resp.text for resp in responses)


def test_api_key_validation(admin):
    assert_error(admin.post("/api/v1/api-keys", json={"name": ""}), 422, "validation_error")
    r = admin.post("/api/v1/api-keys", json={"name": "x", "org_id": "org_other"})
    assert_error(r, 422, "validation_error")
    assert len(admin.get("/api/v1/api-keys").json()["data"]) == 1


# ---- campaigns ----------------------------------------------------------------------------


def test_campaign_create_read_update_list_archive(admin):
    r = admin.post(
        "/api/v1/campaigns", json={"name": "Solar", "landing_url": "https://lp.example/a"}
    )
    assert r.status_code == 201, r.text
    campaign = r.json()
    cid = campaign["id"]
    assert cid.startswith("cmp_") and campaign["org_id"] == admin.org_id
    assert (campaign["name"], campaign["landing_url"], campaign["archived"]) == (
        "Solar",
        "https://lp.example/a",
        False,
    )
    assert admin.get(f"/api/v1/campaigns/{cid}").json() == campaign

    r = admin.patch(
        f"/api/v1/campaigns/{cid}", json={"name": "Solar 2", "landing_url": "https://lp.example/b"}
    )
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["landing_url"]) == ("Solar 2", "https://lp.example/b")
    assert admin.get(f"/api/v1/campaigns/{cid}").json()["name"] == "Solar 2"
    r = admin.patch(f"/api/v1/campaigns/{cid}", json={"name": "Solar 3"})
    assert r.json()["landing_url"] == "https://lp.example/b"

    other = admin.post("/api/v1/campaigns", json={"name": "Roofing"}).json()
    listed = admin.get("/api/v1/campaigns").json()
    assert [c["id"] for c in listed["data"]] == newest_first(other["id"], cid)
    assert listed["next_cursor"] is None

    r = admin.post(f"/api/v1/campaigns/{cid}/archive")
    assert r.status_code == 200 and r.json()["archived"] is True
    assert [c["id"] for c in admin.get("/api/v1/campaigns").json()["data"]] == [other["id"]]
    archived = admin.get("/api/v1/campaigns", params={"archived": "true"}).json()["data"]
    assert [c["id"] for c in archived] == [cid]
    assert admin.get(f"/api/v1/campaigns/{cid}").json()["archived"] is True
    # An archived campaign takes no new leads.
    r = admin.post("/api/leads", json={"cid": cid, "email": "a@b.c"})
    assert_error(r, 400, "invalid_cid")


def test_campaign_paging(admin):
    ids = [admin.post("/api/v1/campaigns", json={"name": f"c{i}"}).json()["id"] for i in range(5)]
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = admin.get("/api/v1/campaigns", params=params).json()
        seen += [c["id"] for c in body["data"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and seen == newest_first(*ids)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 201},
        {"name": 5},
        {"name": "x", "landing_url": "ftp://example.com"},
        {"name": "x", "landing_url": "javascript:alert(1)"},
        {"name": "x", "landing_url": "https://"},
        {"name": "x", "archived": True},
        {"name": "x", "org_id": "org_other"},
    ],
)
def test_campaign_validation(admin, body):
    assert_error(admin.post("/api/v1/campaigns", json=body), 422, "validation_error")
    assert admin.get("/api/v1/campaigns").json()["data"] == []


def test_unknown_campaign_is_404(admin):
    assert_error(admin.get("/api/v1/campaigns/cmp_nope"), 404, "campaign_not_found")
    assert_error(
        admin.patch("/api/v1/campaigns/cmp_nope", json={"name": "x"}), 404, "campaign_not_found"
    )
    assert_error(admin.post("/api/v1/campaigns/cmp_nope/archive"), 404, "campaign_not_found")
    assert_error(admin.get("/api/v1/campaigns/cmp_nope/events"), 404, "campaign_not_found")
    assert_error(admin.get("/api/v1/campaigns/cmp_nope/sources"), 404, "campaign_not_found")


# ---- event definitions ------------------------------------------------------------------


def test_event_definition_create_read_update_list_archive(admin):
    cid = setup_campaign(admin)["id"]
    body = {
        "event_id": "deposit",
        "name": "First deposit",
        "aliases": ["dep", "ftd"],
        "payout": 12.5,
    }
    r = admin.post(f"/api/v1/campaigns/{cid}/events", json=body)
    assert r.status_code == 201, r.text
    evd = r.json()
    assert evd["id"].startswith("evd_") and evd["campaign_id"] == cid
    assert (evd["event_id"], evd["type"], evd["allow_duplicates"], evd["aliases"]) == (
        "deposit",
        "conversion",
        False,
        ["dep", "ftd"],
    )
    assert evd["payout"] == 12.5
    assert admin.get(f"/api/v1/campaigns/{cid}/events/{evd['id']}").json() == evd
    listed = admin.get(f"/api/v1/campaigns/{cid}/events").json()["data"]
    assert {e["event_id"] for e in listed} == {
        "sale_completed",
        "lead_approved",
        "page_view",
        "upsell",
        "deposit",
    }

    changes = {
        "name": "FTD",
        "payout": 20,
        "aliases": ["ftd"],
        "allow_duplicates": True,
        "type": "tracking",
    }
    r = admin.patch(f"/api/v1/campaigns/{cid}/events/{evd['id']}", json=changes)
    assert r.status_code == 200, r.text
    updated = admin.get(f"/api/v1/campaigns/{cid}/events/{evd['id']}").json()
    assert (updated["name"], updated["payout"], updated["aliases"]) == ("FTD", 20, ["ftd"])
    assert (updated["allow_duplicates"], updated["type"]) == (True, "tracking")
    # The freed alias can be used by another event now.
    r = admin.post(f"/api/v1/campaigns/{cid}/events", json={"event_id": "dep"})
    assert r.status_code == 201, r.text

    r = admin.post(f"/api/v1/campaigns/{cid}/events/{evd['id']}/archive")
    assert r.status_code == 200 and r.json()["archived"] is True
    listed = admin.get(f"/api/v1/campaigns/{cid}/events").json()["data"]
    assert "deposit" not in {e["event_id"] for e in listed}
    archived = admin.get(f"/api/v1/campaigns/{cid}/events", params={"archived": True}).json()[
        "data"
    ]
    assert [e["id"] for e in archived] == [evd["id"]]
    # An archived event no longer fires.
    lead = new_lead(admin, cid)
    r = admin.post(
        f"/api/event/global/{admin.org_id}",
        json={"event_id": "ftd", "transaction_id": lead["transaction_id"]},
    )
    assert_error(r, 400, "invalid_event_id")


@pytest.mark.parametrize(
    "body",
    [
        {"event_id": "sale_completed"},
        {"event_id": "Sale_Completed"},
        {"event_id": "approve"},  # an alias of lead_approved
        {"event_id": "refund", "aliases": ["sale_completed"]},
        {"event_id": "refund", "aliases": ["APPROVE"]},
    ],
)
def test_event_id_or_alias_clash_is_409(admin, body):
    cid = setup_campaign(admin)["id"]
    before = admin.get(f"/api/v1/campaigns/{cid}/events").json()["data"]
    r = admin.post(f"/api/v1/campaigns/{cid}/events", json={"type": "conversion", **body})
    assert_error(r, 409, "event_id_taken")
    assert admin.get(f"/api/v1/campaigns/{cid}/events").json()["data"] == before


def test_event_alias_update_clash_is_409_and_other_campaign_is_free(admin):
    cid = setup_campaign(admin)["id"]
    events = admin.get(f"/api/v1/campaigns/{cid}/events").json()["data"]
    upsell = next(e for e in events if e["event_id"] == "upsell")
    url = f"/api/v1/campaigns/{cid}/events/{upsell['id']}"
    assert_error(admin.patch(url, json={"aliases": ["page_view"]}), 409, "event_id_taken")
    assert_error(admin.patch(url, json={"aliases": ["approve"]}), 409, "event_id_taken")
    assert admin.get(url).json()["aliases"] == []
    # Its own event id as an alias is no clash with itself; a fresh alias is fine.
    assert admin.patch(url, json={"aliases": ["cross_sell"]}).status_code == 200
    other = admin.post("/api/v1/campaigns", json={"name": "Other"}).json()["id"]
    r = admin.post(f"/api/v1/campaigns/{other}/events", json={"event_id": "sale_completed"})
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"event_id": ""},
        {"event_id": "has space"},
        {"event_id": "x" * 101},
        {"event_id": "ok", "type": "purchase"},
        {"event_id": "ok", "allow_duplicates": "maybe"},
        {"event_id": "ok", "payout": "NaN"},
        {"event_id": "ok", "payout": "Infinity"},
        {"event_id": "ok", "payout": 1e20},
        {"event_id": "ok", "payout": "ten"},
        {"event_id": "ok", "aliases": "single"},
        {"event_id": "ok", "aliases": ["bad alias"]},
        {"event_id": "ok", "aliases": [f"a{i}" for i in range(51)]},
        {"event_id": "ok", "campaign_id": "cmp_other"},
    ],
)
def test_event_definition_validation(admin, body):
    cid = admin.post("/api/v1/campaigns", json={"name": "x"}).json()["id"]
    assert_error(admin.post(f"/api/v1/campaigns/{cid}/events", json=body), 422, "validation_error")
    assert admin.get(f"/api/v1/campaigns/{cid}/events").json()["data"] == []


def test_event_of_another_campaign_is_404(admin):
    a = setup_campaign(admin)["id"]
    b = admin.post("/api/v1/campaigns", json={"name": "B"}).json()["id"]
    evd = admin.get(f"/api/v1/campaigns/{a}/events").json()["data"][0]
    url = f"/api/v1/campaigns/{b}/events/{evd['id']}"
    assert_error(admin.get(url), 404, "event_definition_not_found")
    assert_error(admin.patch(url, json={"name": "x"}), 404, "event_definition_not_found")
    assert_error(admin.post(url + "/archive"), 404, "event_definition_not_found")
    assert admin.get(f"/api/v1/campaigns/{a}/events/{evd['id']}").json() == evd


# ---- sources -----------------------------------------------------------------------------


def test_new_campaign_has_organic_source_that_cannot_be_archived(admin):
    cid = admin.post("/api/v1/campaigns", json={"name": "x"}).json()["id"]
    sources = admin.get(f"/api/v1/campaigns/{cid}/sources").json()["data"]
    assert [(s["pid"], s["type"], s["active"], s["archived"]) for s in sources] == [
        ("organic", "organic", True, False)
    ]
    organic = sources[0]
    r = admin.post(f"/api/v1/campaigns/{cid}/sources/{organic['id']}/archive")
    assert_error(r, 409, "organic_source")
    assert admin.get(f"/api/v1/campaigns/{cid}/sources/{organic['id']}").json()["archived"] is False
    r = admin.post(f"/api/v1/campaigns/{cid}/sources", json={"pid": "organic"})
    assert_error(r, 409, "pid_taken")
    # Every campaign gets its own organic source.
    other = admin.post("/api/v1/campaigns", json={"name": "y"}).json()["id"]
    other_sources = admin.get(f"/api/v1/campaigns/{other}/sources").json()["data"]
    assert [s["pid"] for s in other_sources] == ["organic"] and other_sources[0]["id"] != organic[
        "id"
    ]


def test_source_create_read_update_list_archive(admin):
    cid = admin.post("/api/v1/campaigns", json={"name": "x"}).json()["id"]
    body = {"pid": "aff_42", "name": "Affiliate 42", "type": "affiliate", "active": True}
    r = admin.post(f"/api/v1/campaigns/{cid}/sources", json=body)
    assert r.status_code == 201, r.text
    src = r.json()
    assert src["id"].startswith("src_") and src["campaign_id"] == cid
    assert (src["pid"], src["name"], src["type"], src["active"]) == (
        "aff_42",
        "Affiliate 42",
        "affiliate",
        True,
    )
    assert admin.get(f"/api/v1/campaigns/{cid}/sources/{src['id']}").json() == src

    assert_error(
        admin.post(f"/api/v1/campaigns/{cid}/sources", json={"pid": "aff_42"}), 409, "pid_taken"
    )
    r = admin.patch(
        f"/api/v1/campaigns/{cid}/sources/{src['id']}", json={"name": "A42", "active": False}
    )
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["active"]) == ("A42", False)
    r = admin.patch(f"/api/v1/campaigns/{cid}/sources/{src['id']}", json={"pid": "renamed"})
    assert_error(r, 422, "validation_error")

    listed = admin.get(f"/api/v1/campaigns/{cid}/sources").json()["data"]
    assert {s["pid"] for s in listed} == {"organic", "aff_42"}
    r = admin.post(f"/api/v1/campaigns/{cid}/sources/{src['id']}/archive")
    assert r.status_code == 200 and r.json()["archived"] is True
    assert [s["pid"] for s in admin.get(f"/api/v1/campaigns/{cid}/sources").json()["data"]] == [
        "organic"
    ]
    archived = admin.get(f"/api/v1/campaigns/{cid}/sources", params={"archived": True}).json()[
        "data"
    ]
    assert [s["id"] for s in archived] == [src["id"]]
    # An archived source takes no leads.
    assert_error(admin.post("/api/leads", json={"cid": cid, "pid": "aff_42"}), 400, "invalid_pid")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"pid": ""},
        {"pid": "with space"},
        {"pid": "x" * 101},
        {"pid": "ok", "type": "organic"},
        {"pid": "ok", "type": "tv"},
        {"pid": "ok", "active": "sometimes"},
        {"pid": "ok", "name": "x" * 201},
        {"pid": "ok", "archived": True},
    ],
)
def test_source_validation(admin, body):
    cid = admin.post("/api/v1/campaigns", json={"name": "x"}).json()["id"]
    assert_error(admin.post(f"/api/v1/campaigns/{cid}/sources", json=body), 422, "validation_error")
    assert len(admin.get(f"/api/v1/campaigns/{cid}/sources").json()["data"]) == 1


# ---- leads -------------------------------------------------------------------------------


def test_lead_form_post_read_by_id_and_transaction_id(admin):
    cid = setup_campaign(admin)["id"]
    r = admin.post(
        "/api/leads",
        json={"cid": cid, "pid": "fb", "sub1": "s1", "email": "ada@example.com", "age": 36},
    )
    assert r.status_code == 201, r.text
    assert r.json()["success"] is True and r.json()["code"] == "lead_created"
    data = r.json()["data"]
    by_id = admin.get(f"/api/v1/leads/{data['lead_id']}").json()
    by_tid = admin.get(f"/api/v1/leads/{data['transaction_id']}").json()
    assert by_id == by_tid
    assert (by_id["id"], by_id["transaction_id"], by_id["campaign_id"]) == (
        data["lead_id"],
        data["transaction_id"],
        cid,
    )
    assert by_id["org_id"] == admin.org_id and by_id["status"] == "completed"
    assert by_id["sub1"] == "s1" and by_id["fields"] == {"email": "ada@example.com", "age": 36}
    fb = next(
        s for s in admin.get(f"/api/v1/campaigns/{cid}/sources").json()["data"] if s["pid"] == "fb"
    )
    assert by_id["source_id"] == fb["id"]

    # Completing the lead named by transaction_id merges the fields.
    r = admin.post(
        "/api/leads", json={"cid": cid, "transaction_id": data["transaction_id"], "phone": "555"}
    )
    assert r.status_code == 200 and r.json()["code"] == "lead_completed", r.text
    lead = admin.get(f"/api/v1/leads/{data['lead_id']}").json()
    assert lead["fields"] == {"email": "ada@example.com", "age": 36, "phone": "555"}
    assert_error(admin.get("/api/v1/leads/lead_nope"), 404, "lead_not_found")


def test_click_redirects_to_landing_url_and_stores_request_context(admin):
    landing = "https://lp.example.com/offer?x=1&tid={transaction_id}&again={transaction_id}"
    cid = setup_campaign(admin, landing_url=landing)["id"]
    headers = {
        "user-agent": "Mozilla/5.0 (Test) Gecko",
        "referer": "https://ads.example.net/page?q=solar+panels",
        "cookie": "_fbp=fb.1.1700000000.42; session=abc",
    }
    query = {"pid": "fb", "sub1": "creative 7", "utm_source": "meta", "gclid": "G-1&2"}
    r = admin.get(f"/c/{cid}", params=query, headers=headers, follow_redirects=False)
    assert r.status_code == 302, r.text
    location = r.headers["location"]
    prefix = "https://lp.example.com/offer?x=1&tid="
    assert location.startswith(prefix), location
    tid = location[len(prefix) :].split("&", 1)[0]
    assert tid and "{" not in location
    assert location == landing.replace("{transaction_id}", quote(tid, safe=""))

    lead = admin.get(f"/api/v1/leads/{tid}").json()
    assert lead["transaction_id"] == tid and lead["campaign_id"] == cid
    assert lead["status"] == "new"
    assert lead["query"] == query
    assert lead["cookies"] == {"_fbp": "fb.1.1700000000.42", "session": "abc"}
    assert lead["user_agent"] == headers["user-agent"]
    assert lead["referrer"] == headers["referer"]
    assert lead["ip"] == "testclient"
    assert (lead["sub1"], lead["utm_source"]) == ("creative 7", "meta")
    fb = next(
        s for s in admin.get(f"/api/v1/campaigns/{cid}/sources").json()["data"] if s["pid"] == "fb"
    )
    assert lead["source_id"] == fb["id"]
    # Each click is a new lead with a new transaction id.
    r2 = admin.get(f"/c/{cid}", params=query, follow_redirects=False)
    assert r2.status_code == 302 and r2.headers["location"] != location


def test_click_errors_create_nothing(admin):
    cid = setup_campaign(admin)["id"]
    assert_error(admin.get("/c/cmp_nope", follow_redirects=False), 400, "invalid_cid")
    assert_error(
        admin.get(f"/c/{cid}", params={"pid": "nobody"}, follow_redirects=False), 400, "invalid_pid"
    )
    assert_error(
        admin.get(f"/c/{cid}", params={"pid": "paused"}, follow_redirects=False),
        403,
        "source_inactive",
    )
    assert admin.get("/api/v1/leads").json()["data"] == []


def test_the_next_click_follows_a_campaign_change_at_once(admin):
    """Campaigns are cached on the write path; an admin change clears the cache, so the
    very next click redirects to the new landing URL, and an archived campaign refuses."""
    cid = setup_campaign(admin, landing_url="https://old.example.com/?t={transaction_id}")["id"]
    first = admin.get(f"/c/{cid}", follow_redirects=False)
    assert first.headers["location"].startswith("https://old.example.com/?t=")
    r = admin.patch(
        f"/api/v1/campaigns/{cid}", json={"landing_url": "https://new.example.com/{transaction_id}"}
    )
    assert r.status_code == 200, r.text
    second = admin.get(f"/c/{cid}", follow_redirects=False)
    assert second.headers["location"].startswith("https://new.example.com/"), second.headers
    assert admin.post(f"/api/v1/campaigns/{cid}/archive").status_code == 200
    assert_error(admin.get(f"/c/{cid}", follow_redirects=False), 400, "invalid_cid")


def test_click_without_landing_url_answers_json(admin):
    cid = admin.post("/api/v1/campaigns", json={"name": "x"}).json()["id"]
    r = admin.get(f"/c/{cid}", follow_redirects=False)
    assert r.status_code == 200 and r.json()["code"] == "lead_created", r.text
    tid = r.json()["data"]["transaction_id"]
    assert admin.get(f"/api/v1/leads/{tid}").json()["campaign_id"] == cid


def test_lead_search(admin):
    cid = setup_campaign(admin)["id"]
    a = new_lead(admin, cid, sub1="alpha", email="a@example.com", utm_source="google")
    b = new_lead(admin, cid, sub1="beta", email="b@example.com", utm_source="google")
    c = new_lead(admin, cid, pid="fb", sub1="alpha", email="c@example.com")

    def ids(**params):
        r = admin.get("/api/v1/leads", params=params)
        assert r.status_code == 200, r.text
        return [lead["id"] for lead in r.json()["data"]]

    assert ids() == newest_first(a["lead_id"], b["lead_id"], c["lead_id"])
    assert ids(transaction_id=b["transaction_id"]) == [b["lead_id"]]
    assert ids(transaction_id="nope") == []
    assert ids(sub1="alpha") == newest_first(a["lead_id"], c["lead_id"])
    assert ids(**{"field.email": "a@example.com"}) == [a["lead_id"]]
    assert ids(**{"field.email": "a@example"}) == []
    assert ids(sub1="alpha", **{"field.email": "c@example.com"}) == [c["lead_id"]]
    assert ids(utm_source="google") == newest_first(a["lead_id"], b["lead_id"])
    assert ids(campaign_id=cid, limit=1) == ids()[:1]
    first = admin.get("/api/v1/leads", params={"limit": 2}).json()
    rest = admin.get("/api/v1/leads", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [x["id"] for x in first["data"] + rest["data"]] == ids() and rest["next_cursor"] is None


def test_distribution(admin):
    cid = setup_campaign(admin)["id"]
    lead = new_lead(admin, cid, email="a@example.com")
    url = f"/api/v1/leads/{lead['lead_id']}/distribution"
    r = admin.post(url, json={"status": "sold", "buyer": "BuyerCo", "price": 12.5})
    assert r.status_code == 200, r.text
    assert r.json()["lead"]["id"] == lead["lead_id"] and r.json()["deliveries"] == []
    stored = admin.get(f"/api/v1/leads/{lead['lead_id']}").json()
    assert (stored["status"], stored["distribution_status"], stored["buyer"], stored["price"]) == (
        "sold",
        "sold",
        "BuyerCo",
        12.5,
    )
    assert stored["distributed_at"] is not None
    # By transaction id too, and unsold.
    r = admin.post(
        f"/api/v1/leads/{lead['transaction_id']}/distribution", json={"status": "unsold"}
    )
    assert r.status_code == 200, r.text
    stored = admin.get(f"/api/v1/leads/{lead['lead_id']}").json()
    assert (stored["status"], stored["distribution_status"]) == ("unsold", "unsold")

    for bad in (
        {"status": "maybe"},
        {},
        {"status": "sold", "price": "abc"},
        {"status": "sold", "x": 1},
    ):
        assert_error(admin.post(url, json=bad), 422, "validation_error")
    assert admin.get(f"/api/v1/leads/{lead['lead_id']}").json() == stored
    r = admin.post("/api/v1/leads/lead_nope/distribution", json={"status": "sold"})
    assert_error(r, 404, "lead_not_found")


# ---- conversions -------------------------------------------------------------------------


@pytest.fixture
def conversions_world(admin):
    cid = setup_campaign(admin)["id"]
    lead1 = new_lead(admin, cid, email="a@example.com")
    lead2 = new_lead(admin, cid, pid="fb", email="b@example.com")
    org = admin.org_id
    fired = [
        fire(
            admin,
            org,
            event_id="sale_completed",
            transaction_id=lead1["transaction_id"],
            revenue=10,
        ),
        fire(admin, org, event_id="page_view", transaction_id=lead1["transaction_id"]),
        fire(admin, org, event_id="upsell", transaction_id=lead1["transaction_id"], revenue=1),
        fire(admin, org, event_id="upsell", transaction_id=lead1["transaction_id"], revenue=2),
        fire(
            admin,
            org,
            event_id="lead_approved",
            transaction_id=lead2["transaction_id"],
            revenue=3,
            pid="fb",
        ),
        fire(
            admin,
            org,
            event_id="sale_completed",
            transaction_id=lead2["transaction_id"],
            revenue=4,
            status="pending",
        ),
        fire(admin, org, event_id="upsell", transaction_id=lead2["transaction_id"], revenue=5),
    ]
    return {"cid": cid, "lead1": lead1, "lead2": lead2, "fired": fired}


def test_conversions_cursor_paging(admin, conversions_world):
    expected = [f["conversion_id"] for f in conversions_world["fired"]]
    everything = admin.get("/api/v1/conversions").json()
    assert [c["id"] for c in everything["data"]] == newest_first(*expected)
    assert everything["next_cursor"] is None

    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        r = admin.get("/api/v1/conversions", params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert 1 <= len(body["data"]) <= 2
        seen += [c["id"] for c in body["data"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert pages < 10
    assert pages == 4
    assert len(seen) == len(set(seen)) == len(expected)
    assert seen == newest_first(*expected)
    assert all("dedupe_key" not in c for c in everything["data"])


def test_conversions_filters(admin, conversions_world):
    w = conversions_world
    lead1, lead2 = w["lead1"]["lead_id"], w["lead2"]["lead_id"]

    def listed(**params):
        r = admin.get("/api/v1/conversions", params=params)
        assert r.status_code == 200, r.text
        return r.json()["data"]

    assert len(listed(lead_id=lead1)) == 4 and len(listed(lead_id=lead2)) == 3
    assert {c["lead_id"] for c in listed(event_id="upsell")} == {lead1, lead2}
    assert len(listed(event_id="upsell")) == 3
    assert [c["event_id"] for c in listed(event_type="tracking")] == ["page_view"]
    assert [c["event_id"] for c in listed(status="pending")] == ["sale_completed"]
    assert len(listed(status="approved")) == 6
    assert len(listed(campaign_id=w["cid"])) == 7 and listed(campaign_id="cmp_nope") == []
    fb = next(
        s
        for s in admin.get(f"/api/v1/campaigns/{w['cid']}/sources").json()["data"]
        if s["pid"] == "fb"
    )
    assert [c["event_id"] for c in listed(source_id=fb["id"])] == ["lead_approved"]
    assert len(listed(lead_id=lead2, event_id="upsell")) == 1
    assert len(listed(created_after="2000-01-01T00:00:00Z")) == 7
    assert listed(created_after="2999-01-01T00:00:00+00:00") == []
    assert listed(created_before="2000-01-01T00:00:00Z") == []
    assert_error(admin.get("/api/v1/conversions", params={"limit": 0}), 422, "validation_error")
    assert_error(admin.get("/api/v1/conversions", params={"limit": 501}), 422, "validation_error")


def test_conversion_status_change_with_history(admin, conversions_world):
    cid = conversions_world["fired"][0]["conversion_id"]
    url = f"/api/v1/conversions/{cid}"
    conv = admin.get(url).json()
    assert conv["status"] == "approved" and [h["status"] for h in conv["history"]] == ["approved"]

    r = admin.post(url + "/status", json={"status": "rejected", "note": "chargeback"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "rejected" and "deliveries" in r.json()
    r = admin.post(url + "/status", json={"status": "approved"})
    assert r.status_code == 200, r.text
    # Setting the current status again adds no history entry.
    assert admin.post(url + "/status", json={"status": "approved"}).status_code == 200

    conv = admin.get(url).json()
    assert conv["status"] == "approved"
    history = conv["history"]
    assert [h["status"] for h in history] == ["approved", "rejected", "approved"]
    assert [h["previous_status"] for h in history] == [None, "approved", "rejected"]
    assert history[1]["note"] == "chargeback"
    assert [
        c["id"]
        for c in admin.get("/api/v1/conversions", params={"status": "rejected"}).json()["data"]
    ] == []

    for bad in (
        {"status": "done"},
        {},
        {"status": "rejected", "note": "x" * 501},
        {"status": "rejected", "x": 1},
    ):
        assert_error(admin.post(url + "/status", json=bad), 422, "validation_error")
    assert len(admin.get(url).json()["history"]) == 3
    r = admin.post("/api/v1/conversions/cnv_nope/status", json={"status": "rejected"})
    assert_error(r, 404, "conversion_not_found")
    assert_error(admin.get("/api/v1/conversions/cnv_nope"), 404, "conversion_not_found")


def test_the_created_entry_is_derived_and_a_stored_one_is_kept(admin, engine, conversions_world):
    """Only status changes are stored; the first entry comes from the conversion row. A
    database written before that holds a stored creation entry: it is shown once."""
    first, second = (f["conversion_id"] for f in conversions_world["fired"][:2])
    conv = admin.get(f"/api/v1/conversions/{first}").json()
    assert conv["history"] == [
        {
            "id": None,
            "conversion_id": first,
            "status": "approved",
            "previous_status": None,
            "note": "created",
            "changed_at": conv["created_at"],
        }
    ]
    with engine.begin() as conn:
        stored = conn.execute(
            sa.select(sa.func.count()).select_from(conversion_status_history)
        ).scalar()
        conn.execute(
            conversion_status_history.insert().values(
                conversion_id=second,
                status="approved",
                previous_status=None,
                note="created",
                changed_at=datetime(2026, 1, 2, tzinfo=UTC),
            )
        )
    assert stored == 0  # firing events wrote no history rows
    r = admin.post(f"/api/v1/conversions/{second}/status", json={"status": "rejected"})
    assert r.status_code == 200, r.text
    history = admin.get(f"/api/v1/conversions/{second}").json()["history"]
    assert [(h["status"], h["previous_status"]) for h in history] == [
        ("approved", None),
        ("rejected", "approved"),
    ]
    assert history[0]["id"] is not None and history[0]["changed_at"].startswith("2026-01-02")


# ---- tenant isolation --------------------------------------------------------------------


@pytest.fixture
def two_orgs(admin, engine):
    """Org A (the `admin` client) with one of everything; org B with its own campaign."""
    campaign = setup_campaign(admin)
    cid = campaign["id"]
    events = admin.get(f"/api/v1/campaigns/{cid}/events").json()["data"]
    sources = admin.get(f"/api/v1/campaigns/{cid}/sources").json()["data"]
    lead = new_lead(admin, cid, email="a@example.com", sub1="secret-sub")
    conv = fire(
        admin,
        admin.org_id,
        event_id="sale_completed",
        transaction_id=lead["transaction_id"],
        revenue=9,
    )
    key_a = admin.get("/api/v1/api-keys").json()["data"][0]
    org_b, key_b = new_org(engine, "beta")
    b_cid = admin.post("/api/v1/campaigns", json={"name": "B's"}, headers=bearer(key_b)).json()[
        "id"
    ]
    return {
        "a": {
            "cid": cid,
            "evd": events[0]["id"],
            "src": next(s["id"] for s in sources if s["pid"] == "fb"),
            "organic": next(s["id"] for s in sources if s["pid"] == "organic"),
            "lead": lead["lead_id"],
            "tid": lead["transaction_id"],
            "conv": conv["conversion_id"],
            "key_id": key_a["id"],
        },
        "b": {"org": org_b, "key": key_b, "cid": b_cid},
    }


def test_other_organization_gets_404_for_everything(admin, two_orgs):
    a, b = two_orgs["a"], two_orgs["b"]
    snapshot_paths = [
        f"/api/v1/campaigns/{a['cid']}",
        f"/api/v1/campaigns/{a['cid']}/events/{a['evd']}",
        f"/api/v1/campaigns/{a['cid']}/sources/{a['src']}",
        f"/api/v1/leads/{a['lead']}",
        f"/api/v1/conversions/{a['conv']}",
    ]
    before = {p: admin.get(p).json() for p in snapshot_paths}
    requests = [
        ("GET", f"/api/v1/campaigns/{a['cid']}", None),
        ("PATCH", f"/api/v1/campaigns/{a['cid']}", {"name": "pwned"}),
        ("POST", f"/api/v1/campaigns/{a['cid']}/archive", None),
        ("GET", f"/api/v1/campaigns/{a['cid']}/events", None),
        ("POST", f"/api/v1/campaigns/{a['cid']}/events", {"event_id": "pwned"}),
        ("GET", f"/api/v1/campaigns/{a['cid']}/events/{a['evd']}", None),
        ("PATCH", f"/api/v1/campaigns/{a['cid']}/events/{a['evd']}", {"name": "pwned"}),
        ("POST", f"/api/v1/campaigns/{a['cid']}/events/{a['evd']}/archive", None),
        ("GET", f"/api/v1/campaigns/{b['cid']}/events/{a['evd']}", None),
        ("PATCH", f"/api/v1/campaigns/{b['cid']}/events/{a['evd']}", {"name": "pwned"}),
        ("POST", f"/api/v1/campaigns/{b['cid']}/events/{a['evd']}/archive", None),
        ("GET", f"/api/v1/campaigns/{a['cid']}/sources", None),
        ("POST", f"/api/v1/campaigns/{a['cid']}/sources", {"pid": "pwned"}),
        ("GET", f"/api/v1/campaigns/{a['cid']}/sources/{a['src']}", None),
        ("PATCH", f"/api/v1/campaigns/{a['cid']}/sources/{a['src']}", {"active": False}),
        ("POST", f"/api/v1/campaigns/{a['cid']}/sources/{a['src']}/archive", None),
        ("POST", f"/api/v1/campaigns/{a['cid']}/sources/{a['organic']}/archive", None),
        ("GET", f"/api/v1/campaigns/{b['cid']}/sources/{a['src']}", None),
        ("PATCH", f"/api/v1/campaigns/{b['cid']}/sources/{a['src']}", {"active": False}),
        ("POST", f"/api/v1/campaigns/{b['cid']}/sources/{a['src']}/archive", None),
        ("GET", f"/api/v1/leads/{a['lead']}", None),
        ("GET", f"/api/v1/leads/{a['tid']}", None),
        ("POST", f"/api/v1/leads/{a['lead']}/distribution", {"status": "sold", "buyer": "B"}),
        ("POST", f"/api/v1/leads/{a['tid']}/distribution", {"status": "unsold"}),
        ("GET", f"/api/v1/conversions/{a['conv']}", None),
        ("POST", f"/api/v1/conversions/{a['conv']}/status", {"status": "rejected"}),
        ("DELETE", f"/api/v1/api-keys/{a['key_id']}", None),
    ]
    wrong = []
    for method, path, body in requests:
        r = admin.request(method, path, json=body, headers=bearer(b["key"]))
        if r.status_code != 404 or r.json().get("success") is not False:
            wrong.append(f"{method} {path} -> {r.status_code} {r.text[:200]}")
    assert wrong == [], "\n".join(wrong)

    lists = [
        ("/api/v1/campaigns", {}),
        ("/api/v1/campaigns", {"archived": True}),
        ("/api/v1/leads", {}),
        ("/api/v1/leads", {"transaction_id": a["tid"]}),
        ("/api/v1/leads", {"sub1": "secret-sub"}),
        ("/api/v1/leads", {"field.email": "a@example.com"}),
        ("/api/v1/leads", {"campaign_id": a["cid"]}),
        ("/api/v1/conversions", {}),
        ("/api/v1/conversions", {"lead_id": a["lead"]}),
        ("/api/v1/conversions", {"campaign_id": a["cid"]}),
        ("/api/v1/api-keys", {}),
    ]
    a_ids = {a["cid"], a["lead"], a["conv"], a["key_id"]}
    for path, params in lists:
        r = admin.get(path, params=params, headers=bearer(b["key"]))
        assert r.status_code == 200, r.text
        leaked = {item["id"] for item in r.json()["data"]} & a_ids
        assert not leaked, f"{path} {params} leaked {leaked}"
        assert all(item.get("org_id") == b["org"] for item in r.json()["data"]), r.text
    assert admin.get("/api/v1/organization", headers=bearer(b["key"])).json()["id"] == b["org"]

    # Nothing of A's changed, and A's key still works.
    assert {p: admin.get(p).json() for p in snapshot_paths} == before
    assert admin.get("/api/v1/organization").json()["id"] == admin.org_id
    assert len(admin.get("/api/v1/campaigns").json()["data"]) == 1
    assert len(admin.get(f"/api/v1/campaigns/{a['cid']}/events").json()["data"]) == 4
