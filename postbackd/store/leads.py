"""Leads: one row per visitor, its tracking ids, fields, money and request context."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from postbackd.model import TRACKING_FIELDS
from postbackd.store import fast, lead_cache
from postbackd.store.rows import page
from postbackd.store.tables import leads, utcnow

FAST = fast.Table(leads)  # the ingest path's statements
_ALL_NONE = dict.fromkeys(FAST.kinds)
_MONEY = tuple(n for n, k in FAST.kinds.items() if k == "money")


def insert_lead(conn: sa.Connection, row: dict[str, Any]) -> dict:
    now = utcnow()
    full = {"fields": {}, "query": {}, "cookies": {}, "session_data": {}, **row}
    full.setdefault("created_at", now)
    full.setdefault("updated_at", now)
    FAST.insert(conn, full)
    if (cache := lead_cache.of(conn)) is not None:
        cache.wrote(_as_read(conn, {**_ALL_NONE, **full}))
    return full


def by_transaction_id(conn: sa.Connection, transaction_id: str) -> dict | None:
    """The lead, from the SQLite writer's cache when it holds it (store/lead_cache.py)."""
    cache = lead_cache.of(conn)
    if cache is None:
        return FAST.select_one(conn, "transaction_id", transaction_id)
    if (lead := cache.get(transaction_id)) is None:
        lead = FAST.select_one(conn, "transaction_id", transaction_id)
        if lead is not None:
            cache.read(lead)
    return lead


def update_lead(conn: sa.Connection, lead: dict, values: dict[str, Any]) -> dict:
    """Write `values` and return the lead as it now is (no re-read)."""
    values = {**values, "updated_at": utcnow()}
    FAST.update(conn, lead["id"], values)
    lead = {**lead, **values}
    if (cache := lead_cache.of(conn)) is not None:
        lead = _as_read(conn, lead)
        cache.wrote(lead)
    return lead


def _as_read(conn: sa.Connection, row: dict) -> dict:
    """`row` as a SELECT would now return it: SQLite keeps money as a float, so a cached
    amount must have gone through one too (every other column comes back as written)."""
    for name in _MONEY:
        if (value := row[name]) is not None:
            row[name] = fast.stored_money(conn, value)
    return row


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
