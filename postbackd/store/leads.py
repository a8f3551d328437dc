"""Leads: one row per visitor, its tracking ids, fields, money and request context."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from postbackd.model import TRACKING_FIELDS
from postbackd.store import fast
from postbackd.store.rows import page
from postbackd.store.tables import leads, utcnow

FAST = fast.Table(leads)  # the ingest path's statements


def insert_lead(conn: sa.Connection, row: dict[str, Any]) -> dict:
    now = utcnow()
    full = {"fields": {}, "query": {}, "cookies": {}, "session_data": {}, **row}
    full.setdefault("created_at", now)
    full.setdefault("updated_at", now)
    FAST.insert(conn, full)
    return full


def by_transaction_id(conn: sa.Connection, transaction_id: str) -> dict | None:
    return FAST.select_one(conn, "transaction_id", transaction_id)


def update_lead(conn: sa.Connection, lead: dict, values: dict[str, Any]) -> dict:
    """Write `values` and return the lead as it now is (no re-read)."""
    values = {**values, "updated_at": utcnow()}
    FAST.update(conn, lead["id"], values)
    return {**lead, **values}


def search(
    conn: sa.Connection, org_id: str, filters: dict[str, Any], **paging: Any
) -> tuple[list, str | None]:
    """Filter by transaction id, campaign, source, status, tracking ids and lead fields."""
    where = [leads.c.org_id == org_id]
    for name in ("transaction_id", "campaign_id", "source_id", "status", "exto", *TRACKING_FIELDS):
        if filters.get(name) is not None:
            where.append(leads.c[name] == filters[name])
    for name, value in (filters.get("fields") or {}).items():
        where.append(leads.c.fields[name].as_string() == value)
    if filters.get("created_after"):
        where.append(leads.c.created_at >= filters["created_after"])
    if filters.get("created_before"):
        where.append(leads.c.created_at < filters["created_before"])
    return page(conn, leads, where, **paging)
