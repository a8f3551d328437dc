"""Cap counters: fires of a postback per calendar window, taken atomically.

On PostgreSQL the counter rows are locked (`FOR UPDATE`, in key order so two writers
cannot deadlock on them) until the transaction ends; on SQLite the single writer already
serializes. Either way a cap of N admits exactly N fires however many events race.
"""

from __future__ import annotations

import sqlalchemy as sa

from postbackd.store.tables import cap_counters


def _ensure(conn: sa.Connection, postback_id: str, key: str) -> None:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(cap_counters).values(postback_id=postback_id, window_key=key, count=0)
    conn.execute(stmt.on_conflict_do_nothing(index_elements=["postback_id", "window_key"]))


def counts(
    conn: sa.Connection, postback_id: str, keys: dict[str, str], *, lock: bool = False
) -> dict[str, int]:
    """Fires counted so far per cap kind (kind -> window key given)."""
    if not keys:
        return {}
    stmt = sa.select(cap_counters.c.window_key, cap_counters.c.count).where(
        cap_counters.c.postback_id == postback_id,
        cap_counters.c.window_key.in_(sorted(keys.values())),
    )
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.order_by(cap_counters.c.window_key).with_for_update()
    found = dict(conn.execute(stmt).all())
    return {kind: found.get(key, 0) for kind, key in keys.items()}


def take(
    conn: sa.Connection, postback_id: str, keys: dict[str, str], limits: dict[str, int]
) -> str | None:
    """Count one fire in every window, unless a cap is reached: then return its kind."""
    for key in sorted(keys.values()):
        _ensure(conn, postback_id, key)
    current = counts(conn, postback_id, keys, lock=True)
    for kind, limit in limits.items():
        if current.get(kind, 0) >= limit:
            return kind
    conn.execute(
        cap_counters.update()
        .where(
            cap_counters.c.postback_id == postback_id,
            cap_counters.c.window_key.in_(list(keys.values())),
        )
        .values(count=cap_counters.c.count + 1)
    )
    return None
