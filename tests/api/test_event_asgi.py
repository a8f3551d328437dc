"""The bare ASGI event routes (api/event_asgi.py) answer exactly as the Starlette routes
they stand in front of: same status, code and message for every kind of bad input, the
same answer for a fired event, the same 413 for a body too large however it arrives, and
a JSON 500 (never a traceback) for a bug. Whatever they do not read themselves (forms,
other methods) still reaches the Starlette routes.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from fastapi.testclient import TestClient

from postbackd.api import event_asgi
from tests.helpers import new_lead, setup_campaign


@pytest.fixture
def lead(admin) -> dict:
    campaign = setup_campaign(admin)
    return new_lead(admin, campaign["id"], email="a@example.com") | {"cid": campaign["id"]}


@pytest.fixture
def starlette_only(admin):
    """The same server, entered below the bare routes (the Starlette route table)."""
    front = admin.app

    async def app(scope, receive, send):
        scope["app"] = front.app
        await front.ingest(scope, receive, send)

    return TestClient(app)


def cases(org_id: str, lead: dict) -> list[tuple[str, str, dict]]:
    """(method, url, request kwargs) of every shape an event postback comes in."""
    tid, cid = lead["transaction_id"], lead["cid"]
    g = f"/api/event/global/{org_id}"
    ok = {"event_id": "page_view", "transaction_id": tid}
    return [
        ("POST", g, {"json": ok}),
        ("POST", g, {"json": {**ok, "sub1": "a", "revenue": "1.5", "cost": 2}}),
        ("GET", g, {"params": {**ok, "sub2": "b"}}),
        ("POST", g + "?event_id=page_view", {"json": {"transaction_id": tid}}),
        ("POST", g + "?event_id=page_view&transaction_id=" + tid, {}),
        (
            "POST",
            g,
            {
                "content": json.dumps(ok),
                "headers": {"content-type": "application/vnd.api+json; charset=utf-8"},
            },
        ),
        ("POST", g, {"data": ok}),  # a form: the Starlette route reads it
        ("POST", "/api/event/trigger", {"json": {**ok, "cid": cid}}),
        ("POST", "/api/event/trigger", {"json": ok}),
        ("POST", "/api/event/trigger", {"json": {**ok, "cid": "cmp_nope"}}),
        (
            "POST",
            g,
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
        ),
        ("POST", g, {"content": b"[1, 2]", "headers": {"content-type": "application/json"}}),
        ("POST", g, {"content": b"  ", "headers": {"content-type": "application/json"}}),
        ("POST", g, {"json": {"transaction_id": tid}}),
        ("POST", g, {"json": {"event_id": "page_view"}}),
        ("POST", g, {"json": {**ok, "transaction_id": "tx_missing"}}),
        ("POST", g, {"json": {**ok, "event_id": "nope"}}),
        ("POST", g, {"json": {**ok, "event_id": "sale_completed"}}),  # no revenue
        ("POST", g, {"json": {**ok, "revenue": "ten"}}),
        ("POST", g, {"json": {**ok, "status": "maybe"}}),
        ("POST", g, {"json": {**ok, "conversion_date": "yesterday"}}),
        ("POST", g, {"json": {**ok, "pid": "paused"}}),
        ("POST", g, {"json": {**ok, "sub1": {"nested": 1}}}),
        ("POST", g, {"json": {**ok, "bad name": "x"}}),
        ("POST", "/api/event/global/org_other", {"json": ok}),
        ("POST", g, {"content": b"x", "headers": {"content-type": "text/plain"}}),
        ("PUT", g, {"json": ok}),
        ("GET", "/api/event/global/", {}),
        ("GET", f"/api/event/global/{org_id}/more", {}),
    ]


def comparable(response) -> tuple:
    body = response.json()
    data = body.get("data")
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k != "conversion_id"}
    return response.status_code, body.get("code"), body.get("message"), data


def test_every_shape_of_event_postback_is_answered_as_the_starlette_route_answers(
    admin, starlette_only, lead
):
    for method, url, kwargs in cases(admin.org_id, lead):
        bare = admin.request(method, url, **kwargs)
        routed = starlette_only.request(method, url, **kwargs)
        assert comparable(bare) == comparable(routed), (method, url, kwargs)
        assert bare.status_code < 500, (method, url, bare.text)
        assert bare.headers["content-type"] == "application/json", (method, url)
    fired = admin.post(
        f"/api/event/global/{admin.org_id}",
        json={"event_id": "page_view", "transaction_id": lead["transaction_id"]},
    )
    assert fired.json()["code"] == "tracking_event_fired"
    assert fired.json()["data"]["conversion_id"].startswith("cnv_")


def run(app, scope_extra: dict, chunks: list[bytes], disconnect: bool = False) -> tuple[int, dict]:
    """One request straight into the ASGI app, its body in `chunks` (no content-length)."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/event/global/org_x",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        **scope_extra,
    }
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    if disconnect:
        messages[-1]["more_body"] = True
        messages.append({"type": "http.disconnect"})
    sent: list[dict] = []

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], json.loads(sent[1]["body"])


def test_a_body_too_large_is_413_whether_declared_or_streamed(admin, settings):
    limit = settings.max_body_bytes
    declared = admin.post(
        f"/api/event/global/{admin.org_id}",
        content=b"{" + b" " * limit + b"}",
        headers={"content-type": "application/json"},
    )
    assert declared.status_code == 413 and declared.json()["code"] == "body_too_large"
    # streamed in chunks, with no content-length to refuse it up front
    status, body = run(admin.app, {}, [b"{" + b" " * (limit // 2)] * 3)
    assert (status, body["code"]) == (413, "body_too_large")
    lying = [(b"content-type", b"application/json"), (b"content-length", b"12x")]
    status, body = run(admin.app, {"headers": lying}, [b"{}"])
    assert (status, body["code"]) == (413, "body_too_large")


def test_a_client_gone_mid_body_is_not_a_server_error(admin):
    status, body = run(admin.app, {}, [b'{"event_id":'], disconnect=True)
    assert (status, body["code"]) == (400, "client_disconnected")


def test_a_bug_answers_json_500_not_a_traceback(admin, monkeypatch, caplog):
    async def broken(*_args):
        raise RuntimeError("boom")

    monkeypatch.setattr(event_asgi, "fire", broken)
    r = admin.post(f"/api/event/global/{admin.org_id}", json={"event_id": "x"})
    assert r.status_code == 500
    assert r.json() == {
        "success": False,
        "code": "internal_error",
        "message": "internal server error",
    }
    assert "boom" not in r.text and "unhandled error in an event postback" in caplog.text
