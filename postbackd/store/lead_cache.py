"""Lead rows the SQLite writer keeps between batches, so an event skips the lead's SELECT.

Every inbound event reads its lead by transaction id; on the writer's one thread that read
and the decoding of its ~50 columns were 12% of the writer's time at saturation. SQLite has
one writer connection, and `PRAGMA data_version` tells that connection whether any other
connection committed since it last asked. So the cache is exact, not a TTL guess:

- it is checked at the start of every write transaction (after BEGIN IMMEDIATE, so no one
  can commit until we do) and emptied when another connection (a CLI, a second process)
  wrote anything;
- what our own units write goes in as they write it, journalled per unit: a unit that is
  rolled back to its SAVEPOINT takes its entries out again; a batch whose COMMIT fails
  loses the cache with its connection (the writer discards both).

Cached rows are shared, never copied: callers treat lead dicts as values and build new
ones to change them (`leads.update_lead` returns a new dict). PostgreSQL has many writers
on many machines and no such cheap signal, so it always reads.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

INFO_KEY = "pbd_lead_cache"
SIZE = 20_000  # rows; ~3 KB each with their JSON decoded, so ~60 MB at most


class LeadCache:
    def __init__(self, size: int = SIZE):
        self.size = size
        self._rows: dict[str, dict] = {}
        self._version: int | None = None
        self._unit: list[str] = []  # written by the running unit
        self.hits = 0
        self.misses = 0

    def begin(self, dbapi_conn: Any) -> None:
        """In a fresh write transaction: forget everything if anyone else committed."""
        cursor = dbapi_conn.cursor()
        try:
            version = cursor.execute("PRAGMA data_version").fetchone()[0]
        finally:
            cursor.close()
        if version != self._version:
            self._rows.clear()
            self._version = version

    def get(self, transaction_id: str) -> dict | None:
        row = self._rows.get(transaction_id)
        if row is None:
            self.misses += 1
        else:
            self.hits += 1
        return row

    def read(self, row: dict) -> None:
        """A row just read in this transaction."""
        self._put(row)

    def wrote(self, row: dict) -> None:
        """A row the running unit just wrote (undone if the unit is rolled back)."""
        self._put(row)
        self._unit.append(row["transaction_id"])

    def _put(self, row: dict) -> None:
        rows = self._rows
        rows[row["transaction_id"]] = row
        if len(rows) > self.size:  # oldest insertion first out; cheaper than true LRU
            del rows[next(iter(rows))]

    def unit_done(self, ok: bool) -> None:
        if not ok:
            for tid in self._unit:
                self._rows.pop(tid, None)
        self._unit.clear()


def install(conn: sa.Connection) -> LeadCache | None:
    """Give a SQLite writer connection its cache (kept with the DB-API connection)."""
    if conn.dialect.name != "sqlite":
        return None
    return conn.info.setdefault(INFO_KEY, LeadCache())


def uninstall(conn: sa.Connection) -> None:
    """Before the writer gives its connection back or discards it: a reader must never
    find a cache nobody keeps current."""
    conn.info.pop(INFO_KEY, None)


def of(conn: sa.Connection) -> LeadCache | None:
    """The cache of a writer connection; None for every other connection."""
    return conn.info.get(INFO_KEY)
