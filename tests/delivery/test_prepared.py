"""Claims rendered where they are claimed (delivery/prepare.py).

Through the SQLite writer process a claim comes back with each delivery's request built
there; the worker sends it only if it is exactly what it would build itself: the same
postback config and secrets, recently. Real databases and a real receiver; the in-process
tests run the same unit in a writer thread (`prepare_in_writer` forced on).
"""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from standardwebhooks.webhooks import Webhook

from postbackd.crypto import SecretBox
from postbackd.delivery import prepare
from postbackd.delivery.dispatcher import context_of
from postbackd.outbound import request as outbound_request
from postbackd.store import claims
from postbackd.store.tables import postbacks, utcnow
from tests.helpers import add_postback, insert_pending, new_lead, setup_campaign, wait_final
from tests.receiver import Answer

TOKEN = "prepare-test#1"
SHAPES = [
    {"sign": True, "fields": {"click": "{transaction_id}", "who": "Zoë & <b>"}},
    {"method": "GET", "params": {"q": "{n} x"}, "fields": {"a": "{n}"}},
    {"format": "xml-16", "auth": {"type": "basic", "login": "ada", "password": "pw:é"}},
    {"format": "form-data", "auth": {"type": "token", "token": "tok-1", "scheme": "Bearer"}},
    {"body": '{"n": {n}, "missing": "{nope}"}', "headers": {"X-N": "{n}"}},
]


def _row(engine, postback_id: str) -> dict:
    """The postback as the worker reads it (its cache loader)."""
    with engine.connect() as conn:
        row = dict(
            conn.execute(sa.select(postbacks).where(postbacks.c.id == postback_id)).one()._mapping
        )
    row["render_key"] = prepare.render_key(row["config"], row["secrets"])
    return row


def _unbound(req: outbound_request.OutboundRequest) -> outbound_request.OutboundRequest:
    """The request with a multipart boundary (random on every rendering) made constant."""
    kind, _, boundary = req.headers.get("Content-Type", "").partition("boundary=")
    if not boundary:
        return req
    headers = {**req.headers, "Content-Type": kind + "boundary=B"}
    body = req.body.replace(boundary.encode(), b"B")
    return outbound_request.OutboundRequest(req.method, req.url, headers, body, req.missing)


def _claim(engine, box: SecretBox, limit: int = 100) -> list[dict]:
    with engine.begin() as conn:
        return prepare.claim(conn, box, claims.claim_due, TOKEN, limit, 60, utcnow())


@pytest.mark.parametrize(
    "shape", SHAPES, ids=lambda s: s.get("format") or s.get("method") or "json"
)
def test_a_prepared_request_is_the_one_the_worker_would_build(
    admin, engine, receiver, settings, shape
):
    from postbackd.delivery.worker import make_box

    box = make_box(settings)
    pb = add_postback(admin, receiver, "/p", trigger="manual", **shape)
    with engine.begin() as conn:
        insert_pending(conn, admin.org_id, pb["id"], 3, due_in=-1)
    claimed = _claim(engine, box)
    assert len(claimed) == 3
    row = _row(engine, pb["id"])
    secrets_ = box.open(row["secrets"])
    for delivery in claimed:
        req = prepare.usable(delivery["request"], row, time.time())
        assert req is not None
        rendered_at = delivery["request"][0]
        assert abs(rendered_at - time.time()) < 5
        built = outbound_request.build(
            row["config"], secrets_, context_of(delivery), delivery["idempotency_key"], rendered_at
        )
        assert _unbound(req) == _unbound(built)
    # the context still comes along: the worker can render again when it must
    assert sorted(context_of(d)["n"] for d in claimed) == [0, 1, 2]


def test_a_changed_postback_or_an_old_request_is_built_again(admin, engine, receiver, settings):
    from postbackd.delivery.worker import make_box

    pb = add_postback(admin, receiver, "/p", trigger="manual", sign=True)
    with engine.begin() as conn:
        insert_pending(conn, admin.org_id, pb["id"], 1, due_in=-1)
    [delivery] = _claim(engine, make_box(settings))
    row = _row(engine, pb["id"])
    now = time.time()
    assert prepare.usable(delivery["request"], row, now) is not None
    assert prepare.usable(delivery["request"], row, now + prepare.FRESH_SECONDS + 1) is None
    assert prepare.usable(None, row, now) is None
    r = admin.patch(f"/api/v1/postbacks/{pb['id']}", json={"url": receiver.url + "/moved"})
    assert r.status_code == 200, r.text
    assert prepare.usable(delivery["request"], _row(engine, pb["id"]), now) is None
    # a new secret changes the key too, even with the same config
    rotated = SecretBox("other").seal({"signing_secret": "whsec_AAAA"})
    assert prepare.render_key(row["config"], rotated) != row["render_key"]


def test_what_cannot_be_rendered_here_comes_back_unprepared(admin, engine, receiver, settings):
    """A disabled postback, secrets this key cannot open: the claim still succeeds, the
    delivery comes without a request, and the worker deals with it as before."""
    from postbackd.delivery.worker import make_box

    off = add_postback(admin, receiver, "/off", trigger="manual")
    sealed = add_postback(admin, receiver, "/sealed", trigger="manual", sign=True)
    with engine.begin() as conn:
        insert_pending(conn, admin.org_id, off["id"], 1, due_in=-1)
        insert_pending(conn, admin.org_id, sealed["id"], 1, due_in=-1)
    assert admin.patch(f"/api/v1/postbacks/{off['id']}", json={"enabled": False}).status_code == 200
    claimed = _claim(engine, SecretBox("not the server's key"))
    assert len(claimed) == 2 and all(d["request"] is None for d in claimed)
    claimed_again = _claim(engine, make_box(settings))  # nothing left due: all leased
    assert claimed_again == []


def test_the_worker_sends_prepared_requests(live, receiver, monkeypatch):
    """End to end in a server whose claims are prepared: a signed postback, its retry and a
    GET, each sent as prepared (the worker built none of them), signatures valid."""
    dispatcher = live.app.state.services.dispatcher
    dispatcher.prepare_in_writer = True
    used: list[bool] = []
    real = prepare.usable

    def spy(prepared, postback, now):
        req = real(prepared, postback, now)
        used.append(req is not None)
        return req

    monkeypatch.setattr(prepare, "usable", spy)
    receiver.script = lambda _req, n: Answer(status=503) if n == 1 else Answer()
    campaign = setup_campaign(live)
    lead = new_lead(live, campaign["id"], email="ada@example.com")
    signed = add_postback(
        live,
        receiver,
        "/signed",
        trigger="manual",
        sign=True,
        fields={"click": "{transaction_id}"},
        retry={"schedule": [0], "max_attempts": 3},
    )
    get = add_postback(
        live, receiver, "/get", trigger="manual", method="GET", fields={"t": "{transaction_id}"}
    )
    fired = [
        live.post(f"/api/v1/postbacks/{pb['id']}/fire", json={"lead_id": lead["lead_id"]})
        for pb in (signed, get)
    ]
    assert all(r.status_code == 202 for r in fired), [r.text for r in fired]
    finals = [wait_final(live, r.json()["delivery_id"]) for r in fired]
    assert [f["state"] for f in finals] == ["delivered", "delivered"]
    assert used and all(used), used  # three attempts, every one prepared
    assert len(used) == 3
    signed_requests = [r for r in receiver.requests if r.path == "/signed"]
    assert len(signed_requests) == 2
    for req in signed_requests:
        assert Webhook(signed["signing_secret"]).verify(req.body, req.headers) == {
            "click": lead["transaction_id"]
        }
    [got] = [r for r in receiver.requests if r.path == "/get"]
    assert got.method == "GET" and got.query == f"t={lead['transaction_id']}"
