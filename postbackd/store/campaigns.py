"""Campaigns with their event definitions and sources (the built-in `organic` included)."""

from __future__ import annotations

import sqlalchemy as sa

from postbackd import ids
from postbackd.model import SourceType
from postbackd.store.cache import CONFIG
from postbackd.store.rows import as_dict
from postbackd.store.tables import campaigns, event_definitions, sources, utcnow

ORGANIC = "organic"


def _stamped(kind: str, org_id: str, values: dict) -> dict:
    now = utcnow()
    return {
        "id": ids.new_id(kind),
        "org_id": org_id,
        **values,
        "created_at": now,
        "updated_at": now,
    }


def create_campaign(conn: sa.Connection, org_id: str, values: dict) -> dict:
    row = _stamped("campaign", org_id, {"archived": False, **values})
    conn.execute(campaigns.insert().values(**row))
    create_source(
        conn,
        org_id,
        row["id"],
        {"pid": ORGANIC, "name": "Organic", "type": SourceType.ORGANIC, "active": True},
    )
    return row


def create_event_definition(
    conn: sa.Connection, org_id: str, campaign_id: str, values: dict
) -> dict:
    row = _stamped(
        "event_definition", org_id, {"campaign_id": campaign_id, "archived": False, **values}
    )
    conn.execute(event_definitions.insert().values(**row))
    return row


def create_source(conn: sa.Connection, org_id: str, campaign_id: str, values: dict) -> dict:
    row = _stamped("source", org_id, {"campaign_id": campaign_id, "archived": False, **values})
    conn.execute(sources.insert().values(**row))
    return row


def event_definitions_of(conn: sa.Connection, campaign_id: str) -> list[dict]:
    stmt = sa.select(event_definitions).where(
        event_definitions.c.campaign_id == campaign_id, event_definitions.c.archived.is_(False)
    )
    return [dict(r._mapping) for r in conn.execute(stmt)]


def find_event_definition(
    conn: sa.Connection, campaign_id: str, name: str, *, cached: bool = False
) -> dict | None:
    """By event id first, then by alias (seed 004 goals: main id + aliases)."""
    if cached:
        rows = CONFIG.get(
            conn, ("events", campaign_id), lambda c: event_definitions_of(c, campaign_id)
        )
    else:
        rows = event_definitions_of(conn, campaign_id)
    for row in rows:
        if row["event_id"] == name:
            return row
    lowered = name.lower()
    return next((r for r in rows if lowered in (a.lower() for a in r["aliases"])), None)


def event_id_taken(
    conn: sa.Connection, campaign_id: str, names: list[str], exclude: str | None
) -> str | None:
    """The first of `names` already used as an event id or alias in the campaign."""
    stmt = sa.select(event_definitions).where(event_definitions.c.campaign_id == campaign_id)
    wanted = {n.lower() for n in names}
    for row in conn.execute(stmt):
        if row.id == exclude:
            continue
        used = {row.event_id.lower(), *(a.lower() for a in row.aliases)}
        if clash := wanted & used:
            return sorted(clash)[0]
    return None


def find_source(conn: sa.Connection, campaign_id: str, pid: str) -> dict | None:
    stmt = sa.select(sources).where(sources.c.campaign_id == campaign_id, sources.c.pid == pid)
    return as_dict(conn.execute(stmt).first())
