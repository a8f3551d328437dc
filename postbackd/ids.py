"""Prefixed, time-sortable, unguessable ids (`lead_01J…`), svix style.

48 bits of milliseconds then 80 random bits, Crockford base32: sortable by creation in
indexes and logs, and unguessable (the transaction id is a capability: whoever holds it
can post conversions for that lead).
"""

from __future__ import annotations

import os
import secrets
import threading
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


# Two base32 characters per lookup: 26 characters (130 bits) in 13 lookups.
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_SHIFTS = tuple(range(120, -1, -10))
_POOL = threading.local()  # random bytes fetched 4 KiB at a time: one syscall per 400 ids


def _forget_pool() -> None:
    _POOL.__dict__.clear()  # a forked child must never reuse its parent's random bytes


os.register_at_fork(after_in_child=_forget_pool)


def _random80() -> int:
    pool = getattr(_POOL, "bytes", b"")
    if len(pool) < 10:
        pool = os.urandom(4000)
    _POOL.bytes = pool[10:]
    return int.from_bytes(pool[:10], "big")


def new_id(kind: str, now_ms: int | None = None) -> str:
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms & 0xFFFFFFFFFFFF) << 80 | _random80()
    return f"{PREFIXES[kind]}_" + "".join([_PAIRS[(value >> s) & 1023] for s in _SHIFTS])


def transaction_id() -> str:
    """The lead's public click id: 26 base32 chars, no prefix (partners paste it anywhere)."""
    return new_id("lead")[5:]


def short_org_id() -> str:
    """Organization ids look like the seed's `org_5f1a2b3c`."""
    return f"org_{secrets.token_hex(4)}"
