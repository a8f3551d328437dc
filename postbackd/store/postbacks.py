"""Outbound postback configurations."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from postbackd import ids
from postbackd.store.rows import get_scoped, page
from postbackd.store.tables import postbacks, utcnow


def insert(conn: sa.Connection, org_id: str, values: dict[str, Any]) -> dict:
    now = utcnow()
    row = {
        "id": ids.new_id("postback"),
        "org_id": org_id,
        **values,
        "created_at": now,
        "updated_at": now,
    }
    conn.execute(postbacks.insert().values(**row))
    return row


def get(conn: sa.Connection, org_id: str, postback_id: str) -> dict | None:
    return get_scoped(conn, postbacks, org_id, postback_id)


def update(conn: sa.Connection, postback_id: str, values: dict[str, Any]) -> None:
    values = {**values, "updated_at": utcnow()}
    conn.execute(postbacks.update().where(postbacks.c.id == postback_id).values(**values))


def active_for(
    conn: sa.Connection, org_id: str, campaign_id: str, triggers: list[str]
) -> list[dict]:
    """Enabled postbacks of the organization that could react to these triggers."""
    stmt = sa.select(postbacks).where(
        postbacks.c.org_id == org_id,
        postbacks.c.enabled.is_(True),
        postbacks.c.archived.is_(False),
        postbacks.c.trigger.in_(triggers),
        sa.or_(postbacks.c.campaign_id.is_(None), postbacks.c.campaign_id == campaign_id),
    )
    return [dict(r._mapping) for r in conn.execute(stmt)]


def search(
    conn: sa.Connection, org_id: str, filters: dict[str, Any], **paging: Any
) -> tuple[list, str | None]:
    where = [postbacks.c.org_id == org_id]
    for name in ("campaign_id", "source_id", "trigger", "enabled", "archived"):
        if filters.get(name) is not None:
            where.append(postbacks.c[name] == filters[name])
    return page(conn, postbacks, where, **paging)


def record_result(conn: sa.Connection, postback_id: str, ok: bool, disable_after: int) -> bool:
    """Count consecutive failures; disable at `disable_after` (0 = never). True if disabled now."""
    if ok:
        conn.execute(
            postbacks.update()
            .where(postbacks.c.id == postback_id, postbacks.c.consecutive_failures != 0)
            .values(consecutive_failures=0)
        )
        return False
    conn.execute(
        postbacks.update()
        .where(postbacks.c.id == postback_id)
        .values(consecutive_failures=postbacks.c.consecutive_failures + 1)
    )
    if disable_after <= 0:
        return False
    stmt = (
        postbacks.update()
        .where(
            postbacks.c.id == postback_id,
            postbacks.c.enabled.is_(True),
            postbacks.c.consecutive_failures >= disable_after,
        )
        .values(enabled=False, disabled_reason=f"{disable_after} consecutive failed deliveries")
    )
    return conn.execute(stmt).rowcount == 1
