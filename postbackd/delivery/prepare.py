"""Render claimed deliveries where they are claimed: in the SQLite writer process.

In a drain the server process is the limit (the HTTP client and the worker's bookkeeping
on one core) while the writer child has most of a core to spare. Reading a delivery's
context and rendering its request (macros, body format, auth, signature) is work that
needs nothing of the server process, so a claim made through the writer process returns
each delivery with its request already built (`claim`), and the worker sends it as it is
(`usable`) — if it was built from the postback configuration and secrets the worker holds
itself (`render_key`) and recently enough for its signature's timestamp. Otherwise, and
for deliveries handed over at ingest, the worker renders as before: same function, same
inputs.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

import orjson
import sqlalchemy as sa

from postbackd import jsontext
from postbackd.crypto import SecretBox
from postbackd.outbound import request as outbound_request
from postbackd.store.cache import CONFIG
from postbackd.store.tables import postbacks

log = logging.getLogger(__name__)
# A prepared request older than this is rendered again before sending: its signature's
# timestamp is the rendering's (receivers of Standard Webhooks refuse 5 minutes); the
# `{timestamp}` macro comes from the context, written when the delivery was planned.
FRESH_SECONDS = 60


def render_key(config: dict, sealed_secrets: str) -> str:
    """What a rendering depends on besides the delivery: the postback's config and secrets."""
    digest = hashlib.blake2b(orjson.dumps(config), digest_size=16)
    digest.update(sealed_secrets.encode())
    return digest.hexdigest()


def context_of(delivery: dict) -> dict:
    """A claimed or handed delivery's context: SQLite's come as the JSON text stored."""
    context = delivery["context"]
    return jsontext.loads(context) if isinstance(context, str) else context


def claim(conn: sa.Connection, box: SecretBox, fn, *args: Any) -> Any:
    """Writer unit: `fn(conn, *args)` (a claim: a list of deliveries, or a tuple whose first
    item is one), then each claimed delivery's request under `request` (None where it could
    not be rendered here: the worker will try and record why)."""
    out = fn(conn, *args)
    batch = out[0] if isinstance(out, tuple) else out
    now = int(time.time())
    for delivery in batch:
        delivery["request"] = _prepared(conn, box, delivery, now)
    return out


def _prepared(conn: sa.Connection, box: SecretBox, delivery: dict, now: int) -> tuple | None:
    rules = CONFIG.get(
        conn, ("prepare", delivery["postback_id"]), lambda c: _rules(c, box, delivery)
    )
    if rules is None:
        return None
    key, config, secrets = rules
    try:
        req = outbound_request.build(
            config, secrets, context_of(delivery), delivery["idempotency_key"], now
        )
    except Exception:  # the worker renders it again and meets (and reports) the same
        log.debug("could not prepare delivery %s", delivery["id"], exc_info=True)
        return None
    return (now, key, req.method, req.url, req.headers, req.body, req.missing)


def _rules(conn: sa.Connection, box: SecretBox, delivery: dict) -> tuple | None:
    """(render key, config, opened secrets) of a postback that still sends, else None."""
    row = conn.execute(
        sa.select(
            postbacks.c.config, postbacks.c.secrets, postbacks.c.enabled, postbacks.c.archived
        ).where(postbacks.c.id == delivery["postback_id"])
    ).first()
    if row is None or row.archived or not row.enabled:
        return None
    try:
        secrets = box.open(row.secrets)
    except ValueError:  # a wrong key: the worker meets it too, and says so
        return None
    return render_key(row.config, row.secrets), row.config, secrets


def usable(
    prepared: tuple | None, postback: dict, now: float
) -> outbound_request.OutboundRequest | None:
    """The prepared request, if it still renders what the worker would render now."""
    if prepared is None:
        return None
    rendered_at, key, method, url, headers, body, missing = prepared
    if key != postback["render_key"] or now - rendered_at > FRESH_SECONDS:
        return None
    return outbound_request.OutboundRequest(method, url, headers, body, missing)
