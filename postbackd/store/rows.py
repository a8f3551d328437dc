"""Row access shared by the aggregate modules: org-scoped get, list with cursor paging."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

MAX_PAGE = 500


def as_dict(row: sa.Row | None) -> dict[str, Any] | None:
    return None if row is None else dict(row._mapping)


def get_scoped(conn: sa.Connection, table: sa.Table, org_id: str, id_: str) -> dict | None:
    """An object of one organization; another organization's id reads as absent."""
    stmt = sa.select(table).where(table.c.id == id_, table.c.org_id == org_id)
    return as_dict(conn.execute(stmt).first())


def page(
    conn: sa.Connection,
    table: sa.Table,
    where: Iterable[sa.ColumnElement[bool]],
    *,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[dict], str | None]:
    """Newest first; ids are time-sortable so the last id is the cursor of the next page."""
    limit = max(1, min(limit, MAX_PAGE))
    stmt = sa.select(table).where(*where)
    if cursor:
        stmt = stmt.where(table.c.id < cursor)
    rows = conn.execute(stmt.order_by(table.c.id.desc()).limit(limit + 1)).all()
    items = [dict(r._mapping) for r in rows[:limit]]
    return items, (items[-1]["id"] if len(rows) > limit else None)


def update_scoped(
    conn: sa.Connection, table: sa.Table, org_id: str, id_: str, values: dict[str, Any]
) -> dict | None:
    if values:
        stmt = table.update().where(table.c.id == id_, table.c.org_id == org_id).values(**values)
        if conn.execute(stmt).rowcount == 0:
            return None
    return get_scoped(conn, table, org_id, id_)
