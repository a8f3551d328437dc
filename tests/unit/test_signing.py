"""Signatures checked by the Standard Webhooks reference library; Basic auth; redaction."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from postbackd.outbound import signing
from postbackd.outbound.signing import (
    REDACTED,
    Redaction,
    basic_auth_header,
    generate_secret,
    redact_headers,
    redact_text,
    sign,
)

BODY = b'{"event":"conversion","payout":12.5}'


def now() -> int:
    return int(time.time())


def test_all_is_exported():
    assert set(signing.__all__) == {
        "REDACTED",
        "Redaction",
        "SECRET_PREFIX",
        "basic_auth_header",
        "generate_secret",
        "redact_headers",
        "redact_text",
        "sign",
    }


# -- secrets -----------------------------------------------------------------------------


def test_generated_secret_is_whsec_base64_of_32_bytes():
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32


def test_generated_secrets_differ():
    assert len({generate_secret() for _ in range(50)}) == 50


@pytest.mark.parametrize("secret", ["whsec_", "", "whsec_not base64!", "whsec_abc"])
def test_bad_secrets_are_refused(secret):
    with pytest.raises(ValueError, match="secret"):
        sign(secret, "msg_1", now(), BODY)


# -- signatures --------------------------------------------------------------------------


def test_known_vector_from_the_standard_webhooks_docs():
    headers = sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        b'{"test": 2432232314}',
    )
    assert headers == {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }


def test_reference_library_verifies_our_signature():
    secret = generate_secret()
    headers = sign(secret, "msg_2abc", now(), BODY)
    assert Webhook(secret).verify(BODY, headers) == {"event": "conversion", "payout": 12.5}


def test_secret_without_prefix_signs_the_same():
    secret = generate_secret()
    ts = now()
    assert sign(secret, "m", ts, BODY) == sign(secret.removeprefix("whsec_"), "m", ts, BODY)


def test_wrong_secret_fails_verification():
    headers = sign(generate_secret(), "msg_1", now(), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(BODY, headers)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h, b: (h, b + b" "),
        lambda h, b: (h, b.replace(b"12.5", b"99.9")),
        lambda h, b: ({**h, "webhook-id": "msg_other"}, b),
        lambda h, b: ({**h, "webhook-timestamp": str(int(h["webhook-timestamp"]) + 1)}, b),
    ],
    ids=["body-appended", "body-changed", "id-changed", "timestamp-changed"],
)
def test_tampering_fails_verification(tamper):
    secret = generate_secret()
    headers, body = tamper(sign(secret, "msg_1", now(), BODY), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers)


def test_stale_timestamp_is_rejected_by_the_receiver():
    secret = generate_secret()
    headers = sign(secret, "msg_1", now() - 3600, BODY)
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(BODY, headers)


def test_non_utf8_bodies_are_signed_over_raw_bytes():
    secret = generate_secret()
    body = '<?xml version="1.0" encoding="UTF-16"?><a>é</a>'.encode("utf-16")
    headers = sign(secret, "msg_1", 1700000000, body)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, b"msg_1.1700000000." + body, hashlib.sha256).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(digest).decode()


@given(msg_id=st.text(min_size=1), body=st.text())
def test_reference_library_verifies_any_utf8_body(msg_id, body):
    secret = "whsec_" + base64.b64encode(b"k" * 24).decode()
    headers = sign(secret, msg_id, now(), body.encode())
    Webhook(secret).verify(body.encode(), headers, json_parse=False)


# -- basic auth --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("login", "password", "header"),
    [
        ("Aladdin", "open sesame", "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),  # RFC 7617 s2
        ("test", "123\u00a3", "Basic dGVzdDoxMjPCow=="),  # RFC 7617 s2.1, UTF-8
        ("user", "", "Basic dXNlcjo="),
        ("user", "pa:ss", "Basic dXNlcjpwYTpzcw=="),
    ],
)
def test_basic_auth_header(login, password, header):
    assert basic_auth_header(login, password) == header


def test_basic_auth_login_cannot_contain_a_colon():
    with pytest.raises(ValueError, match="':'"):
        basic_auth_header("a:b", "c")


# -- redaction ---------------------------------------------------------------------------


def test_credential_headers_are_always_redacted_case_insensitively():
    headers = {
        "Authorization": "Bearer xyz",
        "WEBHOOK-SIGNATURE": "v1,abc",
        "proxy-authorization": "Basic x",
        "Cookie": "sid=1",
        "X-Api-Key": "k",
        "webhook-id": "msg_1",
        "Content-Type": "application/json",
    }
    assert redact_headers(headers, []) == {
        "Authorization": REDACTED,
        "WEBHOOK-SIGNATURE": REDACTED,
        "proxy-authorization": REDACTED,
        "Cookie": REDACTED,
        "X-Api-Key": REDACTED,
        "webhook-id": "msg_1",
        "Content-Type": "application/json",
    }


def test_headers_carrying_a_secret_are_redacted_and_the_input_is_untouched():
    headers = {"X-Token": "tok-s3cret-value", "X-Other": "plain", "X-Enc": "a%2Bb%2Fc%3D"}
    copy = dict(headers)
    out = redact_headers(headers, ["s3cret", "a+b/c="])
    assert out == {"X-Token": REDACTED, "X-Other": "plain", "X-Enc": REDACTED}
    assert list(out) == list(headers)
    assert headers == copy


def test_redact_text_replaces_every_form_of_each_secret():
    secret = "p@ss word/+="
    text = f"url=https://x/?k={secret}&q=p%40ss+word%2F%2B%3D&r=p%40ss%20word%2F%2B%3D"
    assert redact_text(text, [secret]) == f"url=https://x/?k={REDACTED}&q={REDACTED}&r={REDACTED}"


def test_redact_text_finds_the_bare_key_of_a_whsec_secret():
    secret = generate_secret()
    bare = secret.removeprefix("whsec_")
    assert redact_text(f"a {secret} b {bare}", [secret]) == f"a {REDACTED} b {REDACTED}"


def test_redact_text_prefers_the_longest_secret():
    assert redact_text("key=abcdefgh", ["abcd", "abcdefgh"]) == f"key={REDACTED}"


@pytest.mark.parametrize("secret", ["", "1", "abc"])
def test_very_short_secrets_are_not_searched_in_text(secret):
    assert redact_text("a1bc abc 123", [secret]) == "a1bc abc 123"


@given(
    secret=st.text(min_size=4).filter(lambda s: "\0" not in s), before=st.text(), after=st.text()
)
def test_redacted_text_never_contains_the_secret(secret, before, after):
    assert secret not in redact_text(before + secret + after, [secret]).replace(REDACTED, "\0")


def test_a_prepared_redaction_matches_the_one_off_functions_and_hides_named_headers():
    secrets = ["s3cret", "p@ss word/+=", "abc"]  # "abc" is too short to redact
    texts = ["tok-s3cret-value", "q=p%40ss+word%2F%2B%3D", "abc plain", ""]
    headers = {"X-Token": "s3cret", "Authorization": "x", "X-Mine": "public", "X-Ok": "abc"}
    prepared = Redaction(secrets, headers=["x-MINE"])
    for text in texts:
        assert prepared.text(text) == redact_text(text, secrets)
    assert prepared.headers(headers) == {
        "X-Token": REDACTED,
        "Authorization": REDACTED,
        "X-Mine": REDACTED,
        "X-Ok": "abc",
    }
    assert Redaction(secrets).headers(headers) == redact_headers(headers, secrets)
