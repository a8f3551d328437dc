"""Claims: how workers lease due deliveries from the outbox.

Oldest first (`claim_due`), or passing over the postbacks of partners a worker already
holds enough of (`claim_passing_over`, round-robin over the others). `FOR UPDATE SKIP
LOCKED` on PostgreSQL lets many workers claim at once; on SQLite the single writer
serializes claims. Deliveries written already leased to a worker at ingest (`Handoff`)
skip the claim altogether.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa

from postbackd.model import DeliveryState
from postbackd.store import fast
from postbackd.store.outbox import DUE_STATES, FAST
from postbackd.store.tables import WAITING, deliveries


class Handoff(NamedTuple):
    """A worker's lease for the deliveries a write is about to plan (see `record.fire_event`):
    they are written leased to it and handed over after the commit, except those of the
    postbacks it passes over as busy, which stay pending for fair claims."""

    token: str
    seconds: float
    passed_over: frozenset[str] = frozenset()


# What a worker needs of a claimed delivery to send it and record the attempt. Not the
# whole row: every claimed row crosses the SQLite writer process's pipe, and its six
# timestamps and bookkeeping columns were a third of the decoding and pickling.
CLAIMED = (
    "id",
    "org_id",
    "postback_id",
    "lead_id",
    "conversion_id",
    "trigger",
    "attempts",
    "leased_by",
    "idempotency_key",
    "context",
)


# The context crosses the SQLite writer process's pipe as the JSON text it was stored as
# (a string pickles for nothing; a 50-key dict did not), and the worker reads it.
_AS_STORED = frozenset({"context"})


def handed(row: dict) -> dict:
    """What a worker needs of a delivery written leased to it (`record.fire_event`'s
    handoff): a claim's columns, the context as the JSON text that was stored."""
    return {k: row[k] for k in CLAIMED}


def _due_picks(pg: bool) -> list[sa.Select]:
    """One indexed pick per way of being due: each walks (state, time) and stops at its
    limit. A single OR-ed query made SQLite sort every due row, slower as backlogs grew."""
    c = deliveries.c
    now, limit = sa.bindparam("now_"), sa.bindparam("limit_")
    picks = [
        sa.select(c.id)
        .where(c.state == state, c.next_attempt_at <= now)
        .order_by(c.next_attempt_at)
        .limit(limit)
        for state in DUE_STATES
    ] + [
        sa.select(c.id)
        .where(c.state == DeliveryState.SENDING.value, c.lease_until <= now)
        .limit(limit)
    ]
    return [p.with_for_update(skip_locked=True) if pg else p for p in picks]


def _claim_stmts(pg: bool) -> list[sa.Update]:
    """UPDATE … WHERE id IN (pick) RETURNING …: one round trip per way of being due."""
    return [_leasing(pick) for pick in _due_picks(pg)]


def _leasing(pick: sa.Select | sa.TextualSelect) -> sa.Update:
    return (
        deliveries.update()
        .where(deliveries.c.id.in_(pick.scalar_subquery()))
        .values(
            state=DeliveryState.SENDING.value,
            lease_until=sa.bindparam("lease_until_"),
            leased_by=sa.bindparam("token_"),
            updated_at=sa.bindparam("updated_at_"),
        )
        .returning(*(deliveries.c[name] for name in CLAIMED))
    )


def _claim_waiting_of(pg: bool) -> sa.Update:
    """A claim of one postback's due deliveries, oldest first, by the partial index."""
    pick = sa.text(
        f"SELECT id FROM deliveries{'' if pg else _BY_WAITING} WHERE {WAITING}"
        " AND postback_id = :postback_ AND next_attempt_at <= :now_"
        f" ORDER BY next_attempt_at LIMIT :limit_{' FOR UPDATE SKIP LOCKED' if pg else ''}"
    ).columns(sa.column("id"))
    return _leasing(pick)


# SQLite's planner, without statistics, preferred (state, lease_until) for these: a walk
# through every waiting row. PostgreSQL's chooses by its statistics (no hints there).
_BY_WAITING = " INDEXED BY ix_deliveries_waiting"


# Postbacks with waiting deliveries visited per claim that passes over busy ones, at most:
# the claim's cost stays bounded however many postbacks wait (their retries, say); the
# next claim walks on from where this one stopped.
WALK = 256


def _walk_sql(pg: bool) -> sa.TextClause:
    """Up to :walk_ postbacks with waiting deliveries after :after_, each with whether one
    is due: a walk over the partial index that jumps from one postback to the next (a loose
    index scan), never through a backlog. PostgreSQL reads each postback's first entry in
    the index's own order through a LATERAL join (one seek per postback, and an order only
    that index gives, so its planner has no cheaper path); SQLite has no LATERAL and is
    told the index."""
    if pg:
        return sa.text(
            f"""
WITH RECURSIVE waiting(postback_id, due_at, n) AS (
  (SELECT postback_id, next_attempt_at, 1 FROM deliveries
   WHERE {WAITING} AND postback_id > :after_
   ORDER BY postback_id, next_attempt_at LIMIT 1)
  UNION ALL
  SELECT d.postback_id, d.next_attempt_at, w.n + 1
  FROM waiting w CROSS JOIN LATERAL (
    SELECT postback_id, next_attempt_at FROM deliveries
    WHERE {WAITING} AND postback_id > w.postback_id
    ORDER BY postback_id, next_attempt_at LIMIT 1) d
  WHERE w.n < :walk_
)
SELECT postback_id, due_at <= :now_ FROM waiting
"""
        )
    by = _BY_WAITING
    return sa.text(
        f"""
WITH RECURSIVE waiting(postback_id, n) AS (
  SELECT (SELECT min(postback_id) FROM deliveries{by}
          WHERE {WAITING} AND postback_id > :after_), 1
  UNION ALL
  SELECT (SELECT min(d.postback_id) FROM deliveries d{by}
          WHERE {WAITING} AND d.postback_id > waiting.postback_id), n + 1
  FROM waiting WHERE waiting.postback_id IS NOT NULL AND n < :walk_
)
SELECT postback_id,
       (SELECT min(d.next_attempt_at) FROM deliveries d{by}
        WHERE {WAITING} AND d.postback_id = waiting.postback_id) <= :now_
FROM waiting
WHERE postback_id IS NOT NULL
"""
    )


class _Claim:
    """One claim transaction: its statements (compiled once per dialect) and what they
    leased, decoded as a worker needs it."""

    def __init__(self, conn: sa.Connection, token: str, lease: float, now: datetime):
        self.conn = conn
        self.pg = conn.dialect.name == "postgresql"
        stamp = {"now_": now, "lease_until_": now + timedelta(seconds=lease), "updated_at_": now}
        self.params: dict[str, Any] = {k: fast.param(conn, "datetime", v) for k, v in stamp.items()}
        self.params["token_"] = token
        self.rows: list[dict] = []

    def run(self, key: tuple, build, **extra: Any) -> None:
        sql, constants = FAST.compiled(self.conn, key, build)
        found = fast.execute(self.conn, sql, {**constants, **self.params, **extra}).fetchall()
        self.rows.extend(FAST.decode(self.conn, CLAIMED, row, keep=_AS_STORED) for row in found)

    def branch(self, branch: int, limit: int) -> None:
        """One of the oldest-first picks (`_claim_stmts`), for what `limit` leaves."""
        if len(self.rows) < limit:
            pg = self.pg
            self.run(
                ("claim", branch), lambda: _claim_stmts(pg)[branch], limit_=limit - len(self.rows)
            )

    def of_postback(self, postback_id: str, limit: int) -> None:
        pg = self.pg
        self.run(("claim_of",), lambda: _claim_waiting_of(pg), postback_=postback_id, limit_=limit)

    def finish(self, limit: int, cursor: str) -> tuple[list[dict], str]:
        """Leases that ran out, as in `claim_due`, for what `limit` leaves."""
        self.branch(_EXPIRED, limit)
        return self.rows, cursor

    def walk(self, after: str, budget: int) -> list[tuple[str, bool]]:
        pg = self.pg
        sql, _ = FAST.compiled(self.conn, ("walk",), lambda: _walk_sql(pg))
        found = fast.execute(
            self.conn, sql, {"after_": after, "walk_": budget, "now_": self.params["now_"]}
        ).fetchall()
        return [(postback_id, bool(due)) for postback_id, due in found]


_EXPIRED = len(DUE_STATES)  # the last oldest-first pick: leases that ran out


def claim_due(
    conn: sa.Connection, token: str, limit: int, lease: float, now: datetime
) -> list[dict]:
    """Lease up to `limit` due deliveries, oldest first: pending/retrying whose time came,
    or whose lease ran out (a crashed worker's). Skips rows another worker holds locked
    (PostgreSQL). The dispatcher's hot loop: statements compiled once, run on the driver."""
    claim = _Claim(conn, token, lease, now)
    for branch in range(_EXPIRED + 1):
        claim.branch(branch, limit)
    return claim.rows


def claim_passing_over(
    conn: sa.Connection,
    token: str,
    limit: int,
    lease: float,
    now: datetime,
    skip: frozenset[str],
    each: int,
    after: str = "",
) -> tuple[list[dict], str]:
    """Lease up to `limit` due deliveries of postbacks not in `skip` (those whose partner
    a worker already holds enough of), up to `each` per postback, visiting postbacks in id
    order from just after `after` and round again: a slow partner's backlog is passed over,
    not walked through. Leases that ran out are taken as in `claim_due`.

    Returns the deliveries and where the next claim goes on from."""
    claim = _Claim(conn, token, lease, now)
    budget = WALK
    # from `after` to the last postback, then round from the first up to `after`
    for start, stop in [(after, None)] + ([("", after)] if after else []):
        walked = claim.walk(start, budget)
        budget -= len(walked)
        for postback_id, due in walked:
            if stop is not None and postback_id >= stop:
                return claim.finish(limit, "")
            if due and postback_id not in skip:
                claim.of_postback(postback_id, min(each, limit - len(claim.rows)))
                if len(claim.rows) >= limit:
                    return claim.finish(limit, postback_id)
        if budget <= 0:  # walked as far as a claim may: the next goes on from here
            return claim.finish(limit, walked[-1][0])
    return claim.finish(limit, "")
