"""Prefixed, time-sortable, unguessable ids (`lead_01J…`), svix style.

48 bits of milliseconds then 80 random bits, Crockford base32: sortable by creation in
indexes and logs, and unguessable (the transaction id is a capability: whoever holds it
can post conversions for that lead).
"""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"

PREFIXES = {
    "organization": "org",
    "campaign": "cmp",
    "event_definition": "evd",
    "source": "src",
    "lead": "lead",
    "conversion": "cnv",
    "postback": "pb",
    "delivery": "dlv",
    "attempt": "att",
    "api_key": "key",
}


def _b32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(kind: str, now_ms: int | None = None) -> str:
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    return f"{PREFIXES[kind]}_{_b32(ms, 10)}{_b32(secrets.randbits(80), 16)}"


def transaction_id() -> str:
    """The lead's public click id: 26 base32 chars, no prefix (partners paste it anywhere)."""
    return new_id("lead")[5:]


def short_org_id() -> str:
    """Organization ids look like the seed's `org_5f1a2b3c`."""
    return f"org_{secrets.token_hex(4)}"
