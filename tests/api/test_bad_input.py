"""Bad input never causes a 5xx or a partial write (SPEC 4): every rejection is a 4xx with
`{success: false, code, message}` and the leads, conversions and the lead itself are exactly
as they were before the request.

Each test sends a family of bad requests and reports every case that misbehaved at once."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from postbackd.api.app import create_app
from tests.helpers import new_lead, setup_campaign

INJECTIONS = [
    "'; DROP TABLE leads; --",
    '" OR "1"="1',
    "1; SELECT pg_sleep(10); --",
    "Robert'); DROP TABLE students;--",
    "%' OR 1=1 --",
    "\\'; TRUNCATE conversions; --",
]
UNICODE = [
    "Zoë Ünïcödé Çà",
    "🚀🔥💯 emoji 👩‍👩‍👧‍👦",
    "שלום עולם",
    "مرحبا بالعالم",
    "\u202eRTL override\u202c",
    "e\u0301 combining",
    "中文字符 日本語",
    "zero\u200bwidth\ufeff",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟙𝟚𝟛",
]
JSON = {"content-type": "application/json"}
ROUTES = ["global", "trigger", "leads"]


@pytest.fixture
def client(settings, engine):
    """Like conftest's client, but a 5xx comes back as a response the assertions can show."""
    app = create_app(settings, engine, run_migrations=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def world(admin):
    campaign = setup_campaign(admin)
    lead = new_lead(admin, campaign["id"], first_name="Ada", email="ada@example.com", sub1="orig")
    return {
        "org": admin.org_id,
        "cid": campaign["id"],
        "tid": lead["transaction_id"],
        "lead_id": lead["lead_id"],
    }


def snapshot(admin, world) -> dict:
    def read(path: str, **params):
        r = admin.get(path, params=params)
        assert r.status_code == 200, f"reading {path} now fails: {r.status_code} {r.text[:200]}"
        return r.json()

    return {
        "leads": len(read("/api/v1/leads", limit=500)["data"]),
        "conversions": len(read("/api/v1/conversions", limit=500)["data"]),
        "campaigns": len(read("/api/v1/campaigns", limit=500)["data"]),
        "events": len(read(f"/api/v1/campaigns/{world['cid']}/events")["data"]),
        "sources": len(read(f"/api/v1/campaigns/{world['cid']}/sources")["data"]),
        "lead": read(f"/api/v1/leads/{world['lead_id']}"),
        "organization": read("/api/v1/organization"),
    }


def assert_rejected(r, status: int | None = None, code: str | None = None) -> dict:
    """A clean 4xx: JSON `{success: false, code, message}`, never a 5xx."""
    assert 400 <= r.status_code < 500, f"{r.status_code} {r.text[:300]}"
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    body = r.json()
    assert body["success"] is False, body
    assert isinstance(body["code"], str) and body["code"], body
    assert isinstance(body["message"], str) and body["message"], body
    if status is not None:
        assert r.status_code == status, f"expected {status}, got {r.status_code} {r.text[:300]}"
    if code is not None:
        assert body["code"] == code, f"expected code {code}, got {r.status_code} {r.text[:300]}"
    return body


class Expect:
    """Collects every misbehaving case of a test, then fails once listing them all."""

    def __init__(self, admin, world):
        self.admin, self.world = admin, world
        self.failures: list[str] = []
        self.rebase()

    def rebase(self) -> None:
        self.before = self.check("snapshot", snapshot, self.admin, self.world)

    def check(self, label: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except AssertionError as exc:
            self.failures.append(f"{label}: {str(exc).splitlines()[0][:400]}")
        except Exception as exc:  # a response that is not even JSON
            self.failures.append(f"{label}: {type(exc).__name__}: {exc}"[:400])
        return None

    def rejected(self, label: str, r, status: int | None = None, code: str | None = None) -> None:
        """A clean 4xx and nothing written."""
        self.check(label, assert_rejected, r, status, code)
        self.unchanged(label)

    def unchanged(self, label: str) -> None:
        after = self.check(f"{label} (snapshot)", snapshot, self.admin, self.world)
        if after is None:
            return
        if self.before is not None and after != self.before:
            diff = {k: (self.before[k], after[k]) for k in after if after[k] != self.before[k]}
            self.failures.append(f"{label}: partial write {str(diff)[:400]}")
        self.before = after

    def done(self) -> None:
        assert not self.failures, f"{len(self.failures)} bad case(s):\n" + "\n".join(self.failures)


@pytest.fixture
def expect(admin, world) -> Expect:
    return Expect(admin, world)


def inbound_url(route: str, world: dict) -> str:
    return {
        "global": f"/api/event/global/{world['org']}",
        "trigger": "/api/event/trigger",
        "leads": "/api/leads",
    }[route]


def valid_params(route: str, world: dict) -> dict:
    """A body that would be accepted (and change the lead) on that route."""
    if route == "leads":
        return {"cid": world["cid"], "transaction_id": world["tid"], "sub1": "changed"}
    params = {"event_id": "page_view", "transaction_id": world["tid"], "sub1": "changed"}
    return {**params, "cid": world["cid"]} if route == "trigger" else params


def tid_of(location: str) -> str:
    return location.rsplit("=", 1)[1]


# ---- malformed bodies -----------------------------------------------------------------------

MALFORMED_JSON = [
    b"{",
    b'{"event_id": }',
    b'{"a": 1,}',
    b"{'event_id': 'page_view'}",
    b'{"a": 1} trailing',
    b"\xff\xfe{\x00}",
    b'{"a": "\xff"}',
    b'{"a": "\\ud800"}',
    b'{"a": NaN}',
    b'{"a": Infinity}',
    b'{"a": 1e400}',
    b"[" * 5000 + b"]" * 5000,
    b'{"a":' * 5000 + b"1" + b"}" * 5000,
]
NOT_AN_OBJECT = [b"[]", b'[{"event_id": "page_view"}]', b"42", b"-1.5", b'"text"', b"null", b"true"]


@pytest.mark.parametrize("route", ROUTES)
def test_malformed_json_and_non_objects(admin, world, expect, route):
    url = inbound_url(route, world)
    for raw in MALFORMED_JSON + NOT_AN_OBJECT:
        r = admin.post(url, content=raw, headers=JSON)
        expect.rejected(repr(raw[:30]), r, 400, "invalid_json")
    expect.done()


@pytest.mark.parametrize("route", ROUTES)
def test_unsupported_content_type_is_415(admin, world, expect, route):
    body = json.dumps(valid_params(route, world)).encode()
    for ctype in (
        "text/plain",
        "application/xml",
        "text/csv",
        "application/octet-stream",
        "image/png",
    ):
        r = admin.post(inbound_url(route, world), content=body, headers={"content-type": ctype})
        expect.rejected(ctype, r, 415, "unsupported_media_type")
    expect.done()


@pytest.mark.parametrize("route", ROUTES)
def test_invalid_form_bodies(admin, world, expect, route):
    url = inbound_url(route, world)
    r = admin.post(
        url,
        content=b"event_id=page_view&sub1=\xff\xfe",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    expect.rejected("urlencoded latin-1", r, 400, "invalid_form")
    for ctype in ("multipart/form-data; boundary=zzz", "multipart/form-data"):
        r = admin.post(url, content=b"garbage, not multipart", headers={"content-type": ctype})
        expect.rejected(ctype, r, 400, "invalid_form")
    expect.done()


# ---- body size --------------------------------------------------------------------------


def chunked(head: bytes, size: int, tail: bytes):
    """A generator body: httpx sends it chunked, without content-length."""

    def chunks():
        yield head
        for _ in range(size // 1000):
            yield b"x" * 1000
        yield tail

    return chunks()


@pytest.mark.parametrize("route", ROUTES)
def test_body_over_the_limit_is_413(admin, world, expect, route):
    url = inbound_url(route, world)
    params = {**valid_params(route, world), "notes": "x" * 70_000}
    expect.rejected("json", admin.post(url, json=params), 413, "body_too_large")
    expect.rejected("form", admin.post(url, data=params), 413, "body_too_large")
    head = json.dumps(valid_params(route, world))[:-1].encode() + b', "notes": "'
    r = admin.post(url, content=chunked(head, 80_000, b'"}'), headers=JSON)
    assert "content-length" not in r.request.headers
    assert r.request.headers.get("transfer-encoding") == "chunked"
    expect.rejected("chunked", r, 413, "body_too_large")
    expect.done()


def test_chunked_body_under_the_limit_is_accepted(admin, world):
    head = b'{"cid": "' + world["cid"].encode() + b'", "note": "'
    r = admin.post("/api/leads", content=chunked(head, 1000, b'"}'), headers=JSON)
    assert r.status_code == 201, r.text


ADMIN_BODIES = [
    ("POST", "/api/v1/campaigns", {"name": "x"}),
    ("PATCH", "/api/v1/campaigns/{cid}", {"name": "x"}),
    ("PATCH", "/api/v1/organization", {"name": "x"}),
    ("POST", "/api/v1/api-keys", {"name": "x"}),
    ("POST", "/api/v1/campaigns/{cid}/events", {"event_id": "x"}),
    ("POST", "/api/v1/campaigns/{cid}/sources", {"pid": "x"}),
    ("POST", "/api/v1/leads/{lead_id}/distribution", {"status": "sold"}),
    ("POST", "/api/v1/conversions/{conv}/status", {"status": "rejected"}),
]


@pytest.fixture
def conv(admin, world) -> str:
    params = {"event_id": "page_view", "transaction_id": world["tid"]}
    r = admin.post(f"/api/event/global/{world['org']}", json=params)
    world["conv"] = r.json()["data"]["conversion_id"]
    return world["conv"]


def test_admin_body_over_the_limit_is_413(admin, world, conv, expect):
    for method, path, _good in ADMIN_BODIES:
        path = path.format(**world)
        r = admin.request(method, path, json={"name": "x" * 70_000})
        expect.rejected(f"{method} {path} content-length", r, 413, "body_too_large")
        r = admin.request(method, path, content=chunked(b'{"name": "', 80_000, b'"}'), headers=JSON)
        expect.rejected(f"{method} {path} chunked", r, 413, "body_too_large")
    expect.done()


# ---- wrong types ------------------------------------------------------------------------


EVENT_TYPE_ERRORS = [
    ({"event_id": ["page_view"]}, "invalid_event_id"),
    ({"event_id": {"id": "page_view"}}, "invalid_event_id"),
    ({"event_id": True}, "invalid_event_id"),
    ({"transaction_id": {"$ne": ""}}, "invalid_transaction_id"),
    ({"transaction_id": ["a", "b"]}, "invalid_transaction_id"),
    ({"transaction_id": False}, "invalid_transaction_id"),
    ({"event_id": "sale_completed", "revenue": {"amount": 1}}, "invalid_revenue"),
    ({"event_id": "sale_completed", "revenue": "1e400"}, "invalid_revenue"),
    ({"event_id": "sale_completed", "revenue": "-Infinity"}, "invalid_revenue"),
    ({"event_id": "sale_completed", "revenue": "0x10"}, "invalid_revenue"),
    ({"event_id": "sale_completed", "revenue": 1e12}, "invalid_revenue"),
    ({"sub1": ["a"]}, "invalid_sub1"),
    ({"utm_source": {"a": 1}}, "invalid_utm_source"),
    ({"pid": ["fb"]}, "invalid_pid"),
    ({"clid": {"a": 1}}, "invalid_clid"),
    ({"status": ["approved"]}, "invalid_status"),
    ({"status": "sold"}, "invalid_status"),
    ({"tcpa_consent": [1]}, "invalid_tcpa_consent"),
    ({"tcpa_consent": 2}, "invalid_tcpa_consent"),
    ({"tcpa_consent_date": {"y": 2026}}, "invalid_tcpa_consent_date"),
    ({"tcpa_consent_date": "2026-02-30"}, "invalid_tcpa_consent_date"),
    ({"conversion_date": ["2026-01-01"]}, "invalid_conversion_date"),
    ({"conversion_date": "2026-01-01 25:00:00"}, "invalid_conversion_date"),
    ({"conversion_timezone": ["PST"]}, "invalid_conversion_timezone"),
    ({"cost": {"v": 1}}, "invalid_cost"),
    ({"cost": 1, "cost_operation": ["add"]}, "invalid_cost_operation"),
    ({"adspend": [1]}, "invalid_adspend"),
    ({"min_price": "cheap"}, "invalid_min_price"),
    ({"email": {"a": 1}}, "invalid_email"),
    ({"email": ["a@b.c"]}, "invalid_email"),
    ({"profile": {"a": {"b": {"c": 1}}}}, "invalid_profile"),
    ({"profile": [[[[1]]]]}, "invalid_profile"),
    ({"score": 1e300}, "invalid_score"),
    ({"bad-name": "x"}, "invalid_field_name"),
    ({"naïve": "x"}, "invalid_field_name"),
    ({"f" * 65: "x"}, "invalid_field_name"),
    ({"": "x"}, "invalid_field_name"),
    ({"a\x00b": "x"}, "invalid_field_name"),
    ({f"field{i}": "x" for i in range(101)}, "too_many_fields"),
]


@pytest.mark.parametrize("route", ["global", "trigger"])
def test_event_wrong_types(admin, world, expect, route):
    url = inbound_url(route, world)
    for params, code in EVENT_TYPE_ERRORS:
        r = admin.post(url, json={**valid_params(route, world), **params})
        expect.rejected(str(params)[:60], r, 400, code)
    base = {"event_id": "page_view", "transaction_id": world["tid"], "sub1": "changed"}
    for cid, code in (
        ([world["cid"]], "invalid_cid"),
        ({"id": 1}, "invalid_cid"),
        ("", "missing_cid"),
    ):
        r = admin.post("/api/event/trigger", json={**base, "cid": cid})
        expect.rejected(f"cid={cid!r}", r, 400, code)
    expect.done()


LEAD_TYPE_ERRORS = [
    ({"cid": None}, "missing_cid"),
    ({"cid": ["x"]}, "invalid_cid"),
    ({"cid": {"$gt": ""}}, "invalid_cid"),
    ({"pid": ["fb"]}, "invalid_pid"),
    ({"transaction_id": ["x"]}, "invalid_transaction_id"),
    ({"session_data": "text"}, "invalid_session_data"),
    ({"session_data": [1, 2]}, "invalid_session_data"),
    ({"session_data": 5}, "invalid_session_data"),
    ({"sub2": {"a": 1}}, "invalid_sub2"),
    ({"email": ["a@b.c"]}, "invalid_email"),
    ({"email": {"a": 1}}, "invalid_email"),
    ({"age": 1e300}, "invalid_age"),
    ({"bad-name": "x"}, "invalid_field_name"),
    ({"😀": "x"}, "invalid_field_name"),
    ({f"field{i}": "x" for i in range(101)}, "too_many_fields"),
]


@pytest.mark.parametrize("complete", [False, True], ids=["create", "complete"])
def test_lead_form_wrong_types(admin, world, expect, complete):
    base = {"cid": world["cid"], "first_name": "Bob", "sub1": "changed"}
    if complete:
        base["transaction_id"] = world["tid"]
    for params, code in LEAD_TYPE_ERRORS:
        r = admin.post("/api/leads", json={**base, **params})
        expect.rejected(str(params)[:60], r, 400, code)
    expect.done()


def test_lead_form_refusals_change_nothing(admin, world):
    other = admin.post("/api/v1/campaigns", json={"name": "Other"}).json()["id"]
    expect = Expect(admin, world)
    body = {"cid": other, "transaction_id": world["tid"], "first_name": "Mallory", "sub1": "x"}
    expect.rejected(
        "other campaign", admin.post("/api/leads", json=body), 400, "transaction_id_taken"
    )
    body = {"cid": world["cid"], "pid": "paused", "first_name": "Bob"}
    expect.rejected("paused", admin.post("/api/leads", json=body), 403, "source_inactive")
    body = {"cid": world["cid"], "pid": "nobody", "first_name": "Bob"}
    expect.rejected("nobody", admin.post("/api/leads", json=body), 400, "invalid_pid")
    expect.rejected(
        "no cid", admin.post("/api/leads", json={"first_name": "Bob"}), 400, "missing_cid"
    )
    expect.rejected(
        "unknown cid", admin.post("/api/leads", json={"cid": "cmp_nope"}), 400, "invalid_cid"
    )
    expect.done()


def test_event_refusals_after_parsing_change_nothing(admin, world):
    """Errors found while recording (duplicate, inactive source …) roll the lead back too."""
    url = f"/api/event/global/{world['org']}"
    fired = {"event_id": "sale_completed", "transaction_id": world["tid"], "revenue": 1}
    assert admin.post(url, json=fired).status_code == 200
    expect = Expect(admin, world)
    change = {"sub1": "changed", "email": "eve@example.com", "cost": 5, "tcpa_consent": 1}
    cases = [
        ({**fired, **change}, 400, "duplicate_event"),
        ({**fired, "event_id": "upsell", "pid": "paused", **change}, 403, "source_inactive"),
        ({**fired, "event_id": "upsell", "pid": "nobody", **change}, 400, "invalid_pid"),
        (
            {"event_id": "lead_approved", "transaction_id": world["tid"], **change},
            400,
            "missing_revenue",
        ),
        ({"event_id": "nope", "transaction_id": world["tid"], **change}, 400, "invalid_event_id"),
        ({"event_id": "page_view", "transaction_id": "nope", **change}, 400, "lead_not_found"),
    ]
    for params, status, code in cases:
        expect.rejected(f"json {code}", admin.post(url, json=params), status, code)
        expect.rejected(f"query {code}", admin.get(url, params=params), status, code)
        expect.rejected(f"form {code}", admin.post(url, data=params), status, code)
    expect.done()


# ---- NUL bytes, unicode, injections, long strings ---------------------------------------


@pytest.mark.parametrize("route", ["global", "trigger"])
def test_nul_byte_in_event_parameters(admin, world, expect, route):
    url = inbound_url(route, world)
    for name in ("event_id", "transaction_id", "sub1", "email", "pid", "clid", "utm_term", "cid"):
        params = valid_params(route, world)
        params[name] = f"{params.get(name, 'x')}\x00tail"
        expected = f"invalid_{name}"
        expect.rejected(f"json {name}", admin.post(url, json=params), 400, expected)
        expect.rejected(f"query {name}", admin.get(url, params=params), 400, expected)
        expect.rejected(f"form {name}", admin.post(url, data=params), 400, expected)
    expect.done()


def test_nul_byte_in_lead_form(admin, world, expect):
    for name in ("cid", "pid", "transaction_id", "sub1", "email"):
        params = {"cid": world["cid"], "email": "x@example.com"}
        params[name] = f"{params.get(name, 'x')}\x00"
        r = admin.post("/api/leads", json=params)
        expect.rejected(name, r, 400, f"invalid_{name}")
    expect.done()


def test_nul_byte_in_session_data_is_refused_or_stored_verbatim(admin, world, expect):
    for session_data in (
        {"note": "a\x00b"},
        {"a\x00b": "note"},
        {"nested": {"deep": ["x", "\x00"]}},
    ):
        label = f"session_data={session_data!r}"
        r = admin.post("/api/leads", json={"cid": world["cid"], "session_data": session_data})
        if r.status_code == 201:
            lead = admin.get(f"/api/v1/leads/{r.json()['data']['lead_id']}").json()
            expect.check(label, lambda s=session_data, got=lead: _eq(got["session_data"], s))
            expect.rebase()
        else:
            expect.rejected(label, r, 400)
    expect.done()


def _eq(got, want) -> None:
    assert got == want, f"stored {got!r}, sent {want!r}"


def test_nul_byte_in_click_is_refused_or_stored_verbatim(admin, world, expect):
    for query in ({"sub1": "a\x00b"}, {"custom": "a\x00b"}, {"a\x00b": "v"}):
        label = f"click query={query!r}"
        r = admin.get(f"/c/{world['cid']}", params=query, follow_redirects=False)
        if r.status_code == 302:
            lead = admin.get(f"/api/v1/leads/{tid_of(r.headers['location'])}").json()
            expect.check(label, lambda q=query, got=lead: _eq(got["query"], q))
            expect.rebase()
        else:
            expect.rejected(label, r, 400)
    r = admin.get("/c/cmp%00x", follow_redirects=False)
    expect.rejected("click path cmp%00x", r, 400, "invalid_cid")
    r = admin.get(f"/c/{world['cid']}", headers={"cookie": "a=b%00c"}, follow_redirects=False)
    expect.check("click cookie a=b%00c", lambda: _eq(r.status_code, 302))
    expect.done()


def test_unicode_is_stored_verbatim(admin, world, expect):
    url = f"/api/event/global/{world['org']}"
    for value in UNICODE:

        def round_trip(value=value):
            params = {
                "event_id": "page_view",
                "transaction_id": world["tid"],
                "sub3": value,
                "note": value,
            }
            r = admin.post(url, json=params)
            assert r.status_code == 200, r.text
            lead = admin.get(f"/api/v1/leads/{world['lead_id']}").json()
            assert (lead["sub3"], lead["fields"]["note"]) == (value, value)

            r = admin.post(url, data={**params, "sub4": value})
            assert r.status_code == 200, r.text
            assert admin.get(f"/api/v1/leads/{world['lead_id']}").json()["sub4"] == value
            r = admin.get(url, params={**params, "sub5": value})
            assert r.status_code == 200, r.text
            assert admin.get(f"/api/v1/leads/{world['lead_id']}").json()["sub5"] == value

            created = new_lead(admin, world["cid"], sub2=value, city=value)
            found = admin.get("/api/v1/leads", params={"sub2": value}).json()["data"]
            assert [x["id"] for x in found] == [created["lead_id"]]
            found = admin.get("/api/v1/leads", params={"field.city": value}).json()["data"]
            assert [x["id"] for x in found] == [created["lead_id"]]

            r = admin.get(
                f"/c/{world['cid']}", params={"sub5": value, "q": value}, follow_redirects=False
            )
            assert r.status_code == 302, r.text
            clicked = admin.get(f"/api/v1/leads/{tid_of(r.headers['location'])}").json()
            assert (clicked["sub5"], clicked["query"]["q"]) == (value, value)

            r = admin.post("/api/v1/campaigns", json={"name": value})
            assert r.status_code == 201, r.text
            assert admin.get(f"/api/v1/campaigns/{r.json()['id']}").json()["name"] == value

        expect.check(repr(value), round_trip)
    expect.done()


def test_sql_injection_strings_are_plain_data(admin, world, expect):
    url = f"/api/event/global/{world['org']}"
    base = {"event_id": "page_view", "transaction_id": world["tid"], "sub1": "changed"}
    for value in INJECTIONS:
        q = quote(value, safe="")

        def stored_verbatim(value=value):
            created = new_lead(admin, world["cid"], sub1=value, email=value)
            lead = admin.get(f"/api/v1/leads/{created['lead_id']}").json()
            assert (lead["sub1"], lead["fields"]["email"]) == (value, value)
            found = admin.get("/api/v1/leads", params={"sub1": value}).json()["data"]
            assert [x["id"] for x in found] == [created["lead_id"]]
            found = admin.get("/api/v1/leads", params={"field.email": value}).json()["data"]
            assert [x["id"] for x in found] == [created["lead_id"]]
            assert admin.get("/api/v1/leads", params={"transaction_id": value}).json()["data"] == []
            params = {"event_id": value, "status": value, "lead_id": value}
            assert admin.get("/api/v1/conversions", params=params).json()["data"] == []
            r = admin.post("/api/v1/campaigns", json={"name": value})
            assert r.status_code == 201, r.text
            assert admin.get(f"/api/v1/campaigns/{r.json()['id']}").json()["name"] == value

        expect.check(f"{value!r} stored", stored_verbatim)
        expect.rebase()
        requests = [
            (
                "transaction_id",
                admin.post(url, json={**base, "transaction_id": value}),
                400,
                "lead_not_found",
            ),
            (
                "event_id",
                admin.post(url, json={**base, "event_id": value}),
                400,
                "invalid_event_id",
            ),
            ("pid", admin.post(url, json={**base, "pid": value}), 400, "invalid_pid"),
            ("status", admin.post(url, json={**base, "status": value}), 400, "invalid_status"),
            ("org path", admin.post(f"/api/event/global/{q}", json=base), 400, "lead_not_found"),
            (
                "cid",
                admin.post("/api/event/trigger", json={**base, "cid": value}),
                400,
                "invalid_cid",
            ),
            ("click path", admin.get(f"/c/{q}", follow_redirects=False), 400, "invalid_cid"),
            ("lead path", admin.get(f"/api/v1/leads/{q}"), 404, "lead_not_found"),
            ("campaign path", admin.get(f"/api/v1/campaigns/{q}"), 404, "campaign_not_found"),
            ("conversion path", admin.get(f"/api/v1/conversions/{q}"), 404, "conversion_not_found"),
            (
                "event_id slug",
                admin.post(f"/api/v1/campaigns/{world['cid']}/events", json={"event_id": value}),
                422,
                "validation_error",
            ),
        ]
        for label, r, status, code in requests:
            expect.rejected(f"{value!r} {label}", r, status, code)
    expect.done()


def test_too_long_strings_on_events(admin, world, expect):
    base = {"event_id": "page_view", "transaction_id": world["tid"], "sub2": "changed"}
    for params, code in [
        ({"email": "e" * 2001}, "invalid_email"),
        ({"sub1": "s" * 501}, "invalid_sub1"),
        ({"utm_content": "u" * 501}, "invalid_utm_content"),
        ({"transaction_id": "t" * 65}, "invalid_transaction_id"),
        ({"event_id": "e" * 101}, "invalid_event_id"),
        ({"pid": "p" * 101}, "invalid_pid"),
        ({"clid": "c" * 201}, "invalid_clid"),
        ({"x" * 65: "v"}, "invalid_field_name"),
    ]:
        r = admin.post(f"/api/event/global/{world['org']}", json={**base, **params})
        expect.rejected(str(params)[:30], r, 400, code)
    expect.done()


def test_longest_accepted_strings_round_trip(admin, world):
    long_email, long_sub = "e" * 2000, "s" * 500
    params = {
        "event_id": "page_view",
        "transaction_id": world["tid"],
        "email": long_email,
        "sub1": long_sub,
    }
    r = admin.post(f"/api/event/global/{world['org']}", json=params)
    assert r.status_code == 200, r.text
    lead = admin.get(f"/api/v1/leads/{world['lead_id']}").json()
    assert (lead["fields"]["email"], lead["sub1"]) == (long_email, long_sub)
    # A long query string is kept whole; the user agent is capped.
    query = {"q": "v" * 5000}
    r = admin.get(
        f"/c/{world['cid']}",
        params=query,
        headers={"user-agent": "U" * 5000},
        follow_redirects=False,
    )
    assert r.status_code == 302, r.text
    clicked = admin.get(f"/api/v1/leads/{tid_of(r.headers['location'])}").json()
    assert clicked["query"] == query and clicked["user_agent"] == "U" * 1000


def test_long_paths_and_query_values(admin, world, expect):
    long = "x" * 10_000
    expect.rejected("lead path", admin.get(f"/api/v1/leads/{long}"), 404, "lead_not_found")
    expect.rejected(
        "campaign path", admin.get(f"/api/v1/campaigns/{long}"), 404, "campaign_not_found"
    )
    r = admin.get(f"/api/v1/conversions/{long}")
    expect.rejected("conversion path", r, 404, "conversion_not_found")
    expect.rejected(
        "click path", admin.get(f"/c/{long}", follow_redirects=False), 400, "invalid_cid"
    )
    for path, params in [
        ("/api/v1/leads", {"sub1": long}),
        ("/api/v1/leads", {"field.email": long}),
        ("/api/v1/leads", {"transaction_id": long}),
        ("/api/v1/conversions", {"cursor": long}),
    ]:
        r = admin.get(path, params=params)
        expect.check(
            f"{path} {next(iter(params))}",
            lambda r=r: _eq((r.status_code, r.json()["data"]), (200, [])),
        )
    expect.done()


# ---- deep nesting, extreme dates and numbers --------------------------------------------


def test_deeply_nested_session_data_is_refused_or_stored(admin, world, expect):
    for depth in (200, 1000):
        nested = '{"a":' * depth + '"leaf"' + "}" * depth
        raw = f'{{"cid": "{world["cid"]}", "session_data": {nested}}}'.encode()
        r = admin.post("/api/leads", content=raw, headers=JSON)
        if r.status_code == 201:
            lead = admin.get(f"/api/v1/leads/{r.json()['data']['lead_id']}")
            expect.check(f"depth {depth} read back", lambda lead=lead: _eq(lead.status_code, 200))
            expect.rebase()
        else:
            expect.rejected(f"session_data nested {depth} deep", r, 400)
    expect.done()


def test_extreme_conversion_dates_never_500(admin, world, expect):
    url = f"/api/event/global/{world['org']}"
    for date, tz in [
        ("9999-12-31 23:59:59", "SST"),
        ("9999-12-31 23:00:00", "PST"),
        ("9999-12-31", "HST"),
        ("0001-01-01 00:00:00", "AST"),
        ("0001-01-01", None),
        ("9999-12-31 23:59:59", None),
    ]:
        params = {"event_id": "page_view", "transaction_id": world["tid"], "conversion_date": date}
        if tz:
            params["conversion_timezone"] = tz
        r = admin.post(url, json=params)
        if r.status_code == 200:

            def readable(conv_id=r.json()["data"]["conversion_id"]):
                one = admin.get(f"/api/v1/conversions/{conv_id}")
                assert one.status_code == 200, (
                    f"accepted, then GET it: {one.status_code} {one.text[:100]}"
                )
                every = admin.get("/api/v1/conversions")
                assert every.status_code == 200, (
                    f"accepted, then list: {every.status_code} {every.text[:100]}"
                )

            expect.check(f"{date} {tz}", readable)
            expect.rebase()
        else:
            expect.rejected(f"{date} {tz}", r, 400, "invalid_conversion_date")
    expect.done()


def test_extreme_admin_date_filters_never_500(admin, world, expect):
    for path in ("/api/v1/leads", "/api/v1/conversions"):
        for params in (
            {"created_after": "0001-01-01T00:00:00+14:00"},
            {"created_before": "9999-12-31T23:59:59-14:00"},
            {"created_after": "9999-12-31T23:59:59Z"},
            {"created_after": "0001-01-01T00:00:00Z"},
        ):
            r = admin.get(path, params=params)
            if r.status_code != 200:
                expect.rejected(f"{path} {params}", r, 422, "validation_error")
    expect.done()


def test_admin_naive_date_filter_is_a_validation_error(admin, world, expect):
    """README: admin validation errors answer 422 `validation_error` naming the field."""
    for path in ("/api/v1/leads", "/api/v1/conversions"):
        for name in ("created_after", "created_before"):
            r = admin.get(path, params={name: "2026-01-01T00:00:00"})
            body = expect.check(f"{path} {name}", assert_rejected, r, 422, "validation_error")
            if body:
                expect.check(
                    f"{path} {name} named", lambda b=body, n=name: _eq(n in b["message"], True)
                )
    expect.done()


def test_cost_accumulating_past_storage_precision(admin, world):
    """`cost_operation=add` repeated must end in a clean refusal, never a 500."""
    url = f"/api/event/global/{world['org']}"
    base = {"event_id": "page_view", "transaction_id": world["tid"], "cost": "999999999999"}
    assert admin.post(url, json={**base, "cost_operation": "override"}).status_code == 200
    for _ in range(110):
        r = admin.post(url, json={**base, "cost_operation": "add"})
        if r.status_code != 200:
            assert_rejected(r, 400, "invalid_cost")
            break
    assert admin.get(f"/api/v1/leads/{world['lead_id']}").json()["cost"] >= 999999999999


# ---- admin bodies -------------------------------------------------------------------------

ADMIN_MALFORMED = [
    b"{",
    b'{"name": }',
    b"[]",
    b'[{"name": "x"}]',
    b"42",
    b'"text"',
    b"null",
    b"",
    b"\xff\xfe",
    b'{"name": "\xff"}',
    b"[" * 5000 + b"]" * 5000,
    b'{"name":' * 3000 + b'"x"' + b"}" * 3000,
]


def test_admin_malformed_bodies_are_422(admin, world, conv, expect):
    for method, path, _good in ADMIN_BODIES:
        path = path.format(**world)
        for raw in ADMIN_MALFORMED:
            r = admin.request(method, path, content=raw, headers=JSON)
            expect.rejected(f"{method} {path} {raw[:16]!r}", r, 422, "validation_error")
    expect.done()


def test_admin_unknown_fields_are_422(admin, world, conv, expect):
    for method, path, good in ADMIN_BODIES:
        path = path.format(**world)
        for extra in (
            {"bogus": 1},
            {"org_id": "org_x"},
            {"id": "x"},
            {"'; DROP TABLE leads; --": 1},
        ):
            r = admin.request(method, path, json={**good, **extra})
            body = expect.check(
                f"{method} {path} {extra}", assert_rejected, r, 422, "validation_error"
            )
            name = next(iter(extra))
            if body:
                fields = [d["field"] for d in body.get("details", [])]
                expect.check(
                    f"{method} {path} names {name}", lambda f=fields, n=name: _eq(n in f, True)
                )
            expect.unchanged(f"{method} {path} {extra}")
    expect.done()


def test_admin_unsupported_content_type(admin, world, conv, expect):
    for method, path, good in ADMIN_BODIES:
        path = path.format(**world)
        for ctype in ("text/plain", "application/xml", "application/x-www-form-urlencoded"):
            r = admin.request(
                method, path, content=json.dumps(good).encode(), headers={"content-type": ctype}
            )
            label = f"{method} {path} {ctype}"
            body = expect.check(label, assert_rejected, r)
            if body:
                got = (r.status_code, body["code"])
                ok = got in {(415, "unsupported_media_type"), (422, "validation_error")}
                expect.check(label, lambda ok=ok, got=got: _eq((ok, got), (True, got)))
            expect.unchanged(label)
    expect.done()


ADMIN_WRONG = [
    ("POST", "/api/v1/campaigns", {"name": 5}),
    ("POST", "/api/v1/campaigns", {"name": ["x"]}),
    ("POST", "/api/v1/campaigns", {"name": None}),
    ("POST", "/api/v1/campaigns", {"name": "x", "landing_url": 5}),
    ("POST", "/api/v1/campaigns", {"name": "n" * 201}),
    ("POST", "/api/v1/campaigns", {"name": "x", "landing_url": "https://e.com/" + "p" * 4000}),
    ("PATCH", "/api/v1/campaigns/{cid}", {"name": {"a": 1}}),
    ("PATCH", "/api/v1/campaigns/{cid}", {"landing_url": "not a url"}),
    ("PATCH", "/api/v1/organization", {"allowed_targets": [1, 2]}),
    ("PATCH", "/api/v1/organization", {"timezone": 5}),
    ("PATCH", "/api/v1/organization", {"currency": "€€€"}),
    ("POST", "/api/v1/api-keys", {"name": ["x"]}),
    ("POST", "/api/v1/campaigns/{cid}/events", {"event_id": 5}),
    ("POST", "/api/v1/campaigns/{cid}/events", {"event_id": "x", "payout": [1]}),
    ("POST", "/api/v1/campaigns/{cid}/events", {"event_id": "x", "aliases": [1, 2]}),
    ("POST", "/api/v1/campaigns/{cid}/events", {"event_id": "x", "name": "n" * 201}),
    ("POST", "/api/v1/campaigns/{cid}/sources", {"pid": "x", "active": [True]}),
    ("POST", "/api/v1/campaigns/{cid}/sources", {"pid": {"a": 1}}),
    ("POST", "/api/v1/leads/{lead_id}/distribution", {"status": "sold", "price": {"v": 1}}),
    ("POST", "/api/v1/leads/{lead_id}/distribution", {"status": "sold", "price": 1e30}),
    ("POST", "/api/v1/leads/{lead_id}/distribution", {"status": "sold", "buyer": "b" * 201}),
    ("POST", "/api/v1/leads/{lead_id}/distribution", {"status": True}),
    ("POST", "/api/v1/conversions/{conv}/status", {"status": ["rejected"]}),
    ("POST", "/api/v1/conversions/{conv}/status", {"status": "rejected", "note": 5}),
]


def test_admin_wrong_types_are_422(admin, world, conv, expect):
    for method, path, body in ADMIN_WRONG:
        label = f"{method} {path} {str(body)[:40]}"
        r = admin.request(method, path.format(**world), json=body)
        got = expect.check(label, assert_rejected, r, 422, "validation_error")
        if got:
            fields = [d["field"] for d in got.get("details", [])]
            expect.check(f"{label} names the field", lambda f=fields: _eq(bool(f) and all(f), True))
        expect.unchanged(label)
    expect.done()


ADMIN_NUL = [
    ("POST", "/api/v1/campaigns", {"name": "a\x00b"}, "/api/v1/campaigns/{id}"),
    ("PATCH", "/api/v1/campaigns/{cid}", {"name": "a\x00b"}, "/api/v1/campaigns/{cid}"),
    ("PATCH", "/api/v1/organization", {"name": "a\x00b"}, "/api/v1/organization"),
    ("POST", "/api/v1/campaigns/{cid}/events", {"event_id": "nul", "name": "a\x00b"}, None),
    ("POST", "/api/v1/campaigns/{cid}/sources", {"pid": "nul", "name": "a\x00b"}, None),
    ("POST", "/api/v1/leads/{lead_id}/distribution", {"status": "sold", "buyer": "a\x00b"}, None),
    ("POST", "/api/v1/api-keys", {"name": "a\x00b"}, None),
    ("POST", "/api/v1/conversions/{conv}/status", {"status": "rejected", "note": "a\x00b"}, None),
]


def test_admin_nul_bytes_are_refused_or_stored_verbatim(admin, world, conv, expect):
    for method, path, body, read in ADMIN_NUL:
        label = f"{method} {path} {body}"
        r = admin.request(method, path.format(**world), json=body)
        if r.status_code in (200, 201):
            if read:
                stored = admin.get(read.format(id=r.json().get("id"), **world)).json()
                expect.check(label, lambda s=stored: _eq(s["name"], "a\x00b"))
            expect.rebase()
        else:
            expect.rejected(label, r, 422, "validation_error")
    expect.done()


def test_admin_nul_bytes_in_paths_and_queries_never_500(admin, world, conv, expect):
    for path, params in [
        ("/api/v1/leads/a%00b", {}),
        ("/api/v1/campaigns/a%00b", {}),
        ("/api/v1/conversions/a%00b", {}),
        ("/api/v1/campaigns/{cid}/events/a%00b", {}),
        ("/api/v1/campaigns/{cid}/sources/a%00b", {}),
        ("/api/v1/api-keys/a%00b", {}),
        ("/api/v1/leads", {"sub1": "a\x00b"}),
        ("/api/v1/leads", {"transaction_id": "a\x00b"}),
        ("/api/v1/leads", {"field.email": "a\x00b"}),
        ("/api/v1/leads", {"cursor": "a\x00b"}),
        ("/api/v1/conversions", {"event_id": "a\x00b"}),
        ("/api/v1/conversions", {"cursor": "a\x00b"}),
        ("/api/v1/campaigns", {"cursor": "a\x00b"}),
    ]:
        label = f"{path} {params}"
        method = "DELETE" if "api-keys" in path else "GET"
        r = admin.request(method, path.format(**world), params=params)
        if r.status_code == 200:
            expect.check(label, lambda r=r: _eq(r.json()["data"], []))
        else:
            body = expect.check(label, assert_rejected, r)
            if body:
                expect.check(label, lambda r=r: _eq(r.status_code in (404, 422), True))
    expect.done()


def test_admin_query_parameter_types(admin, world, expect):
    for path, params in [
        ("/api/v1/campaigns", {"limit": "abc"}),
        ("/api/v1/campaigns", {"archived": "perhaps"}),
        ("/api/v1/leads", {"limit": 0}),
        ("/api/v1/leads", {"limit": 10**30}),
        ("/api/v1/leads", {"created_after": "yesterday"}),
        ("/api/v1/conversions", {"limit": -1}),
        ("/api/v1/conversions", {"created_before": "2026-13-01T00:00:00Z"}),
    ]:
        r = admin.get(path, params=params)
        body = expect.check(f"{path} {params}", assert_rejected, r, 422, "validation_error")
        if body:
            name = next(iter(params))
            expect.check(
                f"{path} names {name}", lambda b=body, n=name: _eq(n in b["message"], True)
            )
    expect.done()


def test_unknown_inbound_paths_and_wrong_methods_are_clean_4xx(client):
    """Under the inbound prefixes an unknown path is 404 and a wrong method 405 (with Allow),
    in the `{success, code, message}` shape; the fast inbound routing must not turn them
    into 500s."""
    cases = [
        ("PUT", "/api/event/global/org_x", 405, "method_not_allowed", "GET, HEAD, POST"),
        ("DELETE", "/api/event/trigger", 405, "method_not_allowed", "GET, HEAD, POST"),
        ("DELETE", "/api/leads", 405, "method_not_allowed", "POST"),
        ("POST", "/c/cmp_x", 405, "method_not_allowed", "GET, HEAD"),
        ("GET", "/api/event/nothing", 404, "not_found", None),
        ("GET", "/api/event/global/", 404, "not_found", None),
        ("GET", "/c/", 404, "not_found", None),
        ("GET", "/api/leadsx", 404, "not_found", None),
    ]
    for method, path, status, code, allow in cases:
        r = client.request(method, path)
        assert (r.status_code, r.json()["code"]) == (status, code), (method, path, r.text)
        assert r.json()["success"] is False and r.json()["message"]
        assert r.headers.get("allow") == allow, (method, path)
