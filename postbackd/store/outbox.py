"""The transactional outbox: deliveries written with the event that caused them.

Workers claim due deliveries with a lease (`store/claims.py`), send them, and record each
attempt here.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from postbackd import ids
from postbackd.model import FINAL_STATES, DeliveryState
from postbackd.store import fast
from postbackd.store.rows import get_scoped, page
from postbackd.store.tables import deliveries, delivery_attempts, utcnow

CHANNEL = "postbackd_outbox"  # PostgreSQL LISTEN/NOTIFY channel of new due deliveries
FAST = fast.Table(deliveries)
FAST_ATTEMPTS = fast.Table(delivery_attempts)
DUE_STATES = (DeliveryState.PENDING.value, DeliveryState.RETRYING.value)


def insert_delivery(conn: sa.Connection, values: dict[str, Any]) -> dict:
    now = utcnow()
    delivery_id = ids.new_id("delivery")
    row = {
        "id": delivery_id,
        "idempotency_key": delivery_id,
        "attempts": 0,
        "missing": [],
        "next_attempt_at": now,
        **values,
        "created_at": now,
        "updated_at": now,
    }
    if row["state"] not in (DeliveryState.PENDING, DeliveryState.SENDING):
        row["next_attempt_at"] = None
        row["finished_at"] = now
    FAST.insert(conn, row)
    return row


def announce(conn: sa.Connection) -> None:
    """Inside a writing transaction: wake listening workers on commit (PostgreSQL only;
    notifications are coalesced per transaction, so a batch rings once)."""
    if conn.dialect.name == "postgresql":
        fast.execute(conn, f"SELECT pg_notify('{CHANNEL}', '')", {})


def next_due_at(conn: sa.Connection) -> datetime | None:
    stmt = sa.select(sa.func.min(deliveries.c.next_attempt_at)).where(
        deliveries.c.state.in_(DUE_STATES)
    )
    value = conn.execute(stmt).scalar()
    return (
        deliveries.c.next_attempt_at.type.process_result_value(value, conn.dialect)
        if isinstance(value, datetime)
        else None
    )


def finish_attempts(
    conn: sa.Connection, worker: str, finished: list[tuple[dict, dict, dict[str, Any]]]
) -> None:
    """Record attempts and their deliveries' new states, (delivery, attempt, update) each.

    A delivery changes only while the lease of the claim that took it
    (`delivery["leased_by"]`) is still its own; if the lease ran out and another claim took
    it, the attempt is still logged (the request did go out) and the state is left to the
    new holder. Attempts are inserted, and deliveries updated, one executemany each.
    """
    now = utcnow()
    FAST_ATTEMPTS.insert_many(
        conn,
        [
            {"id": ids.new_id("attempt"), "delivery_id": d["id"], "worker": worker, **attempt}
            for d, attempt, _update in finished
        ],
    )
    by_shape: dict[tuple, list] = {}
    for delivery, _attempt, update in finished:
        values = {**update, "lease_until": None, "leased_by": None, "updated_at": now}
        held = {"leased_by": delivery["leased_by"], "state": DeliveryState.SENDING.value}
        by_shape.setdefault(tuple(values), []).append((delivery["id"], values, held))
    for changes in by_shape.values():
        FAST.update_many(conn, changes)


def renew(conn: sa.Connection, tokens: list[str], lease: float, now: datetime) -> int:
    """Extend the leases of deliveries still being worked on (the worker's heartbeat)."""
    if not tokens:
        return 0
    stmt = (
        deliveries.update()
        .where(
            deliveries.c.leased_by.in_(tokens), deliveries.c.state == DeliveryState.SENDING.value
        )
        .values(lease_until=now + timedelta(seconds=lease))
    )
    return conn.execute(stmt).rowcount


def release(conn: sa.Connection, delivery: dict, update: dict[str, Any]) -> bool:
    """Finish a leased delivery without an attempt (skipped at send time)."""
    stmt = (
        deliveries.update()
        .where(deliveries.c.id == delivery["id"], deliveries.c.leased_by == delivery["leased_by"])
        .values(**update, lease_until=None, leased_by=None, updated_at=utcnow())
    )
    return conn.execute(stmt).rowcount == 1


def get(conn: sa.Connection, org_id: str, delivery_id: str) -> dict | None:
    return get_scoped(conn, deliveries, org_id, delivery_id)


def attempts_of(conn: sa.Connection, delivery_id: str) -> list[dict]:
    stmt = (
        sa.select(delivery_attempts)
        .where(delivery_attempts.c.delivery_id == delivery_id)
        .order_by(delivery_attempts.c.number, delivery_attempts.c.id)
    )
    return [dict(r._mapping) for r in conn.execute(stmt)]


FILTERS = ("id", "state", "postback_id", "lead_id", "conversion_id", "trigger", "skip_filter")


def filter_clause(org_id: str, filters: dict[str, Any]) -> list[sa.ColumnElement[bool]]:
    where = [deliveries.c.org_id == org_id]
    where += [deliveries.c[n] == filters[n] for n in FILTERS if filters.get(n) is not None]
    if filters.get("created_after"):
        where.append(deliveries.c.created_at >= filters["created_after"])
    if filters.get("created_before"):
        where.append(deliveries.c.created_at < filters["created_before"])
    return where


def search(
    conn: sa.Connection, org_id: str, filters: dict[str, Any], **paging: Any
) -> tuple[list, str | None]:
    return page(conn, deliveries, filter_clause(org_id, filters), **paging)


def _replayable(filters: dict[str, Any]) -> sa.ColumnElement[bool]:
    """Finished deliveries only; skipped ones (stopped by a posting filter, perhaps for legal
    reasons) only when asked for by `state="skipped"`."""
    if filters.get("state"):
        wanted = [filters["state"]] if filters["state"] in FINAL_STATES else []
    else:
        wanted = [DeliveryState.DELIVERED.value, DeliveryState.DEAD.value]
    return deliveries.c.state.in_(wanted)


def count(conn: sa.Connection, org_id: str, filters: dict[str, Any]) -> int:
    where = filter_clause(org_id, filters) + [_replayable(filters)]
    return conn.execute(sa.select(sa.func.count()).select_from(deliveries).where(*where)).scalar()


def requeue(
    conn: sa.Connection, org_id: str, filters: dict[str, Any], limit: int = 1000
) -> list[str]:
    """Replay: put finished deliveries matching `filters` back to pending, keeping their key.

    Only finished ones (see `_replayable`): a replay never races a running attempt, and
    repeated calls make progress through a large set.
    """
    now = utcnow()
    where = filter_clause(org_id, filters) + [_replayable(filters)]
    chosen = [
        r.id
        for r in conn.execute(
            sa.select(deliveries.c.id).where(*where).order_by(deliveries.c.id).limit(limit)
        )
    ]
    if chosen:
        announce(conn)
        conn.execute(
            deliveries.update()
            .where(deliveries.c.id.in_(chosen))
            .values(
                state=DeliveryState.PENDING.value,
                next_attempt_at=now,
                finished_at=None,
                updated_at=now,
            )
        )
    return chosen


def counts_by_state(conn: sa.Connection, org_id: str | None = None) -> dict[str, int]:
    stmt = sa.select(deliveries.c.state, sa.func.count()).group_by(deliveries.c.state)
    if org_id:
        stmt = stmt.where(deliveries.c.org_id == org_id)
    return {state: n for state, n in conn.execute(stmt)}


def stats(conn: sa.Connection, org_id: str, postback_id: str | None = None) -> dict[str, Any]:
    """Counts by state, and skipped deliveries by the filter that stopped them."""
    where = [deliveries.c.org_id == org_id]
    if postback_id:
        where.append(deliveries.c.postback_id == postback_id)
    by_state = (
        sa.select(deliveries.c.state, sa.func.count()).where(*where).group_by(deliveries.c.state)
    )
    by_filter = (
        sa.select(deliveries.c.skip_filter, sa.func.count())
        .where(*where, deliveries.c.state == DeliveryState.SKIPPED.value)
        .group_by(deliveries.c.skip_filter)
    )
    return {
        "by_state": {state: n for state, n in conn.execute(by_state)},
        "skipped_by_filter": {name or "unknown": n for name, n in conn.execute(by_filter)},
    }
