"""Conversions (fired events on leads) and their status history."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from postbackd.store import fast
from postbackd.store.rows import page
from postbackd.store.tables import conversion_status_history, conversions, utcnow

FAST = fast.Table(conversions)
FAST_HISTORY = fast.Table(conversion_status_history)


def exists_dedupe(conn: sa.Connection, dedupe_key: str) -> bool:
    return FAST.select_one(conn, "dedupe_key", dedupe_key, ["id"]) is not None


def insert_conversion(conn: sa.Connection, row: dict[str, Any]) -> dict:
    now = utcnow()
    full = {**row, "created_at": now, "updated_at": now}
    FAST.insert(conn, full)  # its "created" history entry is derived, see history()
    return full


def add_history(
    conn: sa.Connection, conversion_id: str, status: str, previous: str | None, note: str
) -> None:
    row = {
        "conversion_id": conversion_id,
        "status": status,
        "previous_status": previous,
        "note": note,
    }
    FAST_HISTORY.insert(conn, {**row, "changed_at": utcnow()})


def set_status(conn: sa.Connection, conversion: dict, status: str, note: str) -> dict:
    now = utcnow()
    conn.execute(
        conversions.update()
        .where(conversions.c.id == conversion["id"])
        .values(status=status, updated_at=now)
    )
    add_history(conn, conversion["id"], status, conversion["status"], note)
    return {**conversion, "status": status, "updated_at": now}


def history(conn: sa.Connection, conversion: dict) -> list[dict]:
    """Every status the conversion had, the first being its status when created.

    Only changes are stored: the creation entry follows from the conversion row (its
    `created_at`, and the first change's previous status or else the current one), which
    spared every inbound event an insert and an index entry. Databases written before
    that hold a stored creation entry (no previous status); it is used as it is.
    """
    stmt = (
        sa.select(conversion_status_history)
        .where(conversion_status_history.c.conversion_id == conversion["id"])
        .order_by(conversion_status_history.c.id)
    )
    stored = [dict(r._mapping) for r in conn.execute(stmt)]
    if stored and stored[0]["previous_status"] is None:
        return stored
    created = {
        "id": None,
        "conversion_id": conversion["id"],
        "status": stored[0]["previous_status"] if stored else conversion["status"],
        "previous_status": None,
        "note": "created",
        "changed_at": conversion["created_at"],
    }
    return [created, *stored]


FILTERS = ("lead_id", "campaign_id", "event_id", "status", "event_type", "source_id")


def search(
    conn: sa.Connection, org_id: str, filters: dict[str, Any], **paging: Any
) -> tuple[list, str | None]:
    where = [conversions.c.org_id == org_id]
    where += [
        conversions.c[name] == filters[name] for name in FILTERS if filters.get(name) is not None
    ]
    if filters.get("created_after"):
        where.append(conversions.c.created_at >= filters["created_after"])
    if filters.get("created_before"):
        where.append(conversions.c.created_at < filters["created_before"])
    return page(conn, conversions, where, **paging)
