"""Outbound authentication and signatures, end to end to a real receiver on 127.0.0.1.

Basic auth and token auth headers exactly; secrets (password, token, signing secret) never
come back from the admin API, the delivery log or the test endpoint; Standard Webhooks
signatures verify with the reference library on every attempt; PATCH keeps secrets.
"""

from __future__ import annotations

import base64
import json
import time
from urllib.parse import quote

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.helpers import (
    add_postback,
    fire_event,
    new_lead,
    setup_campaign,
    wait_final,
    wait_state,
)
from tests.receiver import Answer

PASSWORD = "p@ss:wörd-Secret-1"
TOKEN = "tok-SECRET-123"
REDACTED = "[redacted]"


@pytest.fixture
def lead(live) -> dict:
    campaign = setup_campaign(live)
    return new_lead(live, campaign["id"], email="ada@example.com")


def basic(login: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()


def assert_hidden(text: str, *secrets: str) -> None:
    """None of the secrets, nor their URL-encoded forms, appear in `text`."""
    for secret in secrets:
        for form in {secret, quote(secret, safe=""), json.dumps(secret)[1:-1]}:
            at = text.find(form)
            assert at < 0, f"secret {secret!r} leaked here: ...{text[max(0, at - 300) : at + 100]}"


def admin_views(client, postback_id: str, delivery_ids: list[str]) -> str:
    """Everything the admin API shows about a postback and its deliveries, as one text."""
    views = [
        client.get(f"/api/v1/postbacks/{postback_id}"),
        client.get("/api/v1/postbacks"),
        client.get("/api/v1/deliveries", params={"postback_id": postback_id}),
        *(client.get(f"/api/v1/deliveries/{d}") for d in delivery_ids),
    ]
    assert all(r.status_code == 200 for r in views), [r.text for r in views]
    return "\n".join(r.text for r in views)


def test_basic_auth_header_exact_and_password_never_shown(live, receiver, lead):
    pb = add_postback(
        live,
        receiver,
        "/basic",
        auth={"type": "basic", "login": "user", "password": PASSWORD},
        fields={"click": "{transaction_id}"},
    )
    assert pb["auth"]["type"] == "basic" and pb["auth"]["login"] == "user"
    assert pb["auth"]["has_secret"] is True
    assert "password" not in pb["auth"] or pb["auth"]["password"] is None
    header = basic("user", PASSWORD)
    assert_hidden(json.dumps(pb), PASSWORD, header)

    fire_event(live, lead["transaction_id"], revenue=1)
    [req] = receiver.wait_for(1)
    assert req.headers["Authorization"] == header
    [delivery] = wait_state(live, {"postback_id": pb["id"]}, "delivered")
    attempt = wait_final(live, delivery["id"])["attempts"][0]
    assert attempt["request_headers"]["Authorization"] == REDACTED

    patched = live.patch(f"/api/v1/postbacks/{pb['id']}", json={"name": "renamed"})
    assert patched.status_code == 200, patched.text
    tested = live.post(f"/api/v1/postbacks/{pb['id']}/test", json={"lead_id": lead["lead_id"]})
    assert tested.status_code == 200, tested.text
    assert tested.json()["request"]["headers"]["Authorization"] == REDACTED
    assert receiver.wait_for(2)[1].headers["Authorization"] == header  # the real one was sent
    everything = "\n".join(
        [admin_views(live, pb["id"], [delivery["id"]]), patched.text, tested.text]
    )
    assert_hidden(everything, PASSWORD, header, header.removeprefix("Basic "))


def test_token_auth_custom_header_and_scheme(live, receiver, lead):
    auths = {
        "/custom": {"type": "token", "token": TOKEN, "header": "X-Api-Token", "scheme": "Token"},
        "/default": {"type": "token", "token": TOKEN},
        "/bare": {"type": "token", "token": TOKEN, "header": "X-Key", "scheme": ""},
    }
    pbs = {path: add_postback(live, receiver, path, auth=auth) for path, auth in auths.items()}
    for pb in pbs.values():
        assert pb["auth"]["has_secret"] is True
        assert_hidden(json.dumps(pb), TOKEN)
    fire_event(live, lead["transaction_id"], revenue=1)
    got = {r.path: r for r in receiver.wait_for(3)}
    assert got["/custom"].headers["X-Api-Token"] == f"Token {TOKEN}"
    assert got["/default"].headers["Authorization"] == f"Bearer {TOKEN}"
    assert got["/bare"].headers["X-Key"] == TOKEN
    assert "Authorization" not in got["/custom"].headers

    deliveries = wait_state(live, {}, "delivered", count=3)
    for path, header in (
        ("/custom", "X-Api-Token"),
        ("/default", "Authorization"),
        ("/bare", "X-Key"),
    ):
        [d] = [d for d in deliveries if d["postback_id"] == pbs[path]["id"]]
        attempt = wait_final(live, d["id"])["attempts"][0]
        assert attempt["request_headers"][header] == REDACTED, (path, attempt)
        tested = live.post(
            f"/api/v1/postbacks/{pbs[path]['id']}/test", json={"lead_id": lead["lead_id"]}
        )
        assert tested.json()["request"]["headers"][header] == REDACTED
        assert_hidden(admin_views(live, pbs[path]["id"], [d["id"]]) + tested.text, TOKEN)


def test_short_token_in_its_custom_header_is_still_redacted(live, receiver, lead):
    """The configured auth header carries a credential whatever its length."""
    token = "k9z"
    pb = add_postback(
        live, receiver, "/short", auth={"type": "token", "token": token, "header": "X-Key"}
    )
    fire_event(live, lead["transaction_id"], revenue=1)
    [delivery] = wait_state(live, {"postback_id": pb["id"]}, "delivered")
    assert receiver.requests[0].headers["X-Key"] == f"Bearer {token}"
    attempt = wait_final(live, delivery["id"])["attempts"][0]
    assert attempt["request_headers"]["X-Key"] == REDACTED, attempt["request_headers"]


def test_secret_echoed_by_the_receiver_is_not_logged(live, receiver, lead):
    """Debugging endpoints (httpbin-style) echo request headers; the log must not keep them."""

    def echo(req, _n):
        return Answer(body=json.dumps({"headers": req.headers}).encode())

    receiver.script = echo
    pb = add_postback(live, receiver, "/echo", auth={"type": "token", "token": TOKEN})
    fire_event(live, lead["transaction_id"], revenue=1)
    [delivery] = wait_state(live, {"postback_id": pb["id"]}, "delivered")
    assert TOKEN in receiver.requests[0].headers["Authorization"]
    tested = live.post(f"/api/v1/postbacks/{pb['id']}/test", json={"lead_id": lead["lead_id"]})
    assert_hidden(admin_views(live, pb["id"], [delivery["id"]]) + tested.text, TOKEN)


def test_standard_webhooks_signature_verifies_on_every_attempt(live, receiver, lead):
    receiver.script = lambda _req, n: Answer(status=503) if n == 1 else Answer()
    pb = add_postback(
        live,
        receiver,
        "/signed",
        sign=True,
        fields={"click": "{transaction_id}", "who": "Zoë"},
        retry={"schedule": [0], "max_attempts": 3},
    )
    secret = pb["signing_secret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) >= 24
    assert "signing_secret" not in live.get(f"/api/v1/postbacks/{pb['id']}").json()

    fire_event(live, lead["transaction_id"], revenue=1)
    [delivery] = wait_state(live, {"postback_id": pb["id"]}, "delivered")
    requests = receiver.wait_for(2)
    assert len(requests) == 2
    for req in requests:
        payload = Webhook(secret).verify(req.body, req.headers)
        assert payload == {"click": lead["transaction_id"], "who": "Zoë"}
        assert req.headers["webhook-id"] == req.headers["Idempotency-Key"] == delivery["id"]
        assert abs(int(req.headers["webhook-timestamp"]) - time.time()) < 60
        assert req.headers["webhook-signature"].startswith("v1,")
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(req.body + b" ", req.headers)

    attempts = wait_final(live, delivery["id"])["attempts"]
    assert [a["request_headers"]["webhook-signature"] for a in attempts] == [REDACTED] * 2
    assert [a["request_headers"]["webhook-id"] for a in attempts] == [delivery["id"]] * 2

    # PATCH keeps the secret (and does not show it again); signatures still verify.
    patched = live.patch(f"/api/v1/postbacks/{pb['id']}", json={"name": "renamed"})
    assert patched.status_code == 200 and "signing_secret" not in patched.json(), patched.text
    r = live.post(f"/api/v1/postbacks/{pb['id']}/fire", json={"lead_id": lead["lead_id"]})
    assert r.status_code == 202, r.text
    wait_final(live, r.json()["delivery_id"])
    Webhook(secret).verify(receiver.requests[2].body, receiver.requests[2].headers)
    views = admin_views(live, pb["id"], [delivery["id"], r.json()["delivery_id"]]) + patched.text
    assert_hidden(views, secret, secret.removeprefix("whsec_"))


@pytest.mark.parametrize("fmt", ["xml-8", "x-www-form-urlencoded", "form-data"])
def test_signature_covers_non_json_bodies(live, receiver, lead, fmt):
    pb = add_postback(live, receiver, "/signed", sign=True, format=fmt, fields={"a": "é & <b>"})
    fire_event(live, lead["transaction_id"], revenue=1)
    [req] = receiver.wait_for(1)
    assert Webhook(pb["signing_secret"]).verify(req.body, req.headers, json_parse=False) is None
    with pytest.raises(WebhookVerificationError):
        Webhook(pb["signing_secret"]).verify(req.body[:-1], req.headers, json_parse=False)
    wait_state(live, {"postback_id": pb["id"]}, "delivered")


def test_patch_without_auth_keeps_the_password(live, receiver, lead):
    pb = add_postback(
        live, receiver, "/basic", auth={"type": "basic", "login": "user", "password": PASSWORD}
    )
    url = f"/api/v1/postbacks/{pb['id']}"
    changes = [
        {"name": "renamed", "fields": {"click": "{transaction_id}"}},
        {"auth": {"type": "basic", "login": "user"}},  # no password: keep the old one
        {"auth": {"login": "other"}},
    ]
    for change in changes:
        r = live.patch(url, json=change)
        assert r.status_code == 200, r.text
        assert r.json()["auth"]["has_secret"] is True
        assert_hidden(r.text, PASSWORD)
    assert live.get(url).json()["auth"]["login"] == "other"
    r = live.post(f"{url}/fire", json={"lead_id": lead["transaction_id"]})
    assert r.status_code == 202, r.text
    assert wait_final(live, r.json()["delivery_id"])["state"] == "delivered"
    [req] = receiver.wait_for(1)
    assert req.headers["Authorization"] == basic("other", PASSWORD)
    assert json.loads(req.body) == {"click": lead["transaction_id"]}
