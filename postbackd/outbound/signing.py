"""Authentication and signatures for outbound requests, and keeping secrets out of logs.

Signatures follow Standard Webhooks (https://www.standardwebhooks.com/): the receiver
recomputes ``base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))`` with the key decoded
from a ``whsec_<base64>`` secret. The body is signed as raw bytes; receivers using the
reference libraries decode it as UTF-8 first, so they can verify every format except
``xml-16``, whose receivers must verify over the raw bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _random
from collections.abc import Iterable, Mapping
from urllib.parse import quote, quote_plus

__all__ = [
    "REDACTED",
    "SECRET_PREFIX",
    "basic_auth_header",
    "generate_secret",
    "Redaction",
    "redact_headers",
    "redact_text",
    "sign",
]

SECRET_PREFIX = "whsec_"
REDACTED = "[redacted]"
# Header names whose values are credentials whatever they contain (compared lowercased).
_ALWAYS_REDACTED = frozenset(
    {"authorization", "proxy-authorization", "webhook-signature", "cookie", "x-api-key"}
)
# Redacting a very short "secret" (say "1") would shred every log line, so secrets shorter
# than this are not searched for in free text; credential headers are redacted regardless.
_MIN_SECRET_LENGTH = 4


def generate_secret() -> str:
    """A fresh signing secret: 32 random bytes, as Standard Webhooks' ``whsec_`` form."""
    return SECRET_PREFIX + base64.b64encode(_random.token_bytes(32)).decode("ascii")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for one message (``timestamp`` in Unix seconds)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_secret_key(secret), signed, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(digest).decode("ascii"),
    }


def _secret_key(secret: str) -> bytes:
    """Decode a ``whsec_`` secret (the prefix is optional, as in the reference libraries)."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("signing secret is not valid base64") from exc
    if not key:
        raise ValueError("signing secret is empty")
    return key


def basic_auth_header(login: str, password: str) -> str:
    """The ``Authorization`` value for HTTP Basic auth (RFC 7617, UTF-8 credentials)."""
    if ":" in login:
        raise ValueError("a Basic auth login cannot contain ':'")
    token = base64.b64encode(f"{login}:{password}".encode()).decode("ascii")
    return "Basic " + token


class Redaction:
    """Secrets prepared once (each with its encoded forms, longest first) for the many
    texts and header maps of the attempts logged under them."""

    def __init__(self, secrets: Iterable[str], headers: Iterable[str] = ()):
        self.needles = _needles(secrets)
        self.hidden = _ALWAYS_REDACTED | {h.lower() for h in headers}

    def text(self, text: str) -> str:
        for needle in self.needles:
            text = text.replace(needle, REDACTED)
        return text

    def headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        hidden, needles = self.hidden, self.needles
        if not needles:  # most postbacks: no secret values, only the credential headers
            return {
                name: REDACTED if name.lower() in hidden else value
                for name, value in headers.items()
            }
        return {
            name: REDACTED if name.lower() in hidden or any(n in value for n in needles) else value
            for name, value in headers.items()
        }


def redact_headers(headers: Mapping[str, str], secrets: Iterable[str]) -> dict[str, str]:
    """A copy safe to log: credential headers, and any header carrying a secret, redacted."""
    return Redaction(secrets).headers(headers)


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret (and its encoded forms) replaced."""
    return Redaction(secrets).text(text)


def _needles(secrets: Iterable[str]) -> list[str]:
    """Each secret plus the forms it travels in (URL-encoded; a whsec_ key's bare base64).

    Longest first, so a secret that contains another is replaced whole.
    """
    found: set[str] = set()
    for secret in secrets:
        if secret and len(secret) >= _MIN_SECRET_LENGTH:
            found.update(_forms(secret))
    return sorted(found, key=len, reverse=True)


def _forms(secret: str) -> set[str]:
    forms = {secret, quote(secret, safe=""), quote_plus(secret, safe="")}
    if secret.startswith(SECRET_PREFIX):
        forms.add(secret.removeprefix(SECRET_PREFIX))
    return forms
