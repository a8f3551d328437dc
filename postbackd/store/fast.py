"""Core statements compiled once per dialect and run on the driver's cursor.

The ingest path runs a handful of statements per request; SQLAlchemy's per-execute
bookkeeping cost several times the SQLite work itself. Here the SQL still comes from the
Core tables (compiled once), only execution and the few type conversions we need
(UTC datetimes, JSON, money, booleans, dates) are done by hand, matching what SQLAlchemy
itself stores, so both paths read each other's rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg.types.json import Jsonb
from sqlalchemy.dialects import sqlite

from postbackd import jsontext
from postbackd.store.tables import UTCDateTime

_SQLITE_NAMED = sqlite.dialect(paramstyle="named")


def _kind(column: sa.Column) -> str:
    t = column.type
    if isinstance(t, UTCDateTime):
        return "datetime"
    if isinstance(t, sa.JSON) or isinstance(getattr(t, "impl", None), sa.JSON):
        return "json"
    if isinstance(t, sa.Numeric):
        return "money"
    if isinstance(t, sa.Boolean):
        return "bool"
    if isinstance(t, sa.Date):
        return "date"
    return "plain"


def _to_sqlite(kind: str, value: Any) -> Any:
    convert = _TO_SQLITE.get(kind)
    return value if value is None or convert is None else convert(value)


def _sqlite_datetime(value: datetime) -> str:
    """`2026-12-03 10:35:38.243442`, as SQLAlchemy stores a naive UTC datetime (cut from
    the aware isoformat: a `replace(tzinfo=None)` copy cost more than the formatting).

    A row's stamps are usually one `now` (created_at, updated_at, next_attempt_at), so the
    last object formatted is remembered by identity: datetimes are immutable."""
    global _LAST_DATETIME
    last = _LAST_DATETIME
    if value is last[0]:
        return last[1]
    text = (value if value.tzinfo is UTC else value.astimezone(UTC)).isoformat(" ", "microseconds")
    _LAST_DATETIME = (value, text[:26])
    return text[:26]


_LAST_DATETIME: tuple[datetime | None, str] = (None, "")


def _money_from_sqlite(value: Any) -> Decimal:
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def stored_money(conn: sa.Connection, value: Any) -> Decimal:
    """An amount as reading it back from this connection's database returns it."""
    return (
        _money_from_sqlite(_to_sqlite("money", value)) if conn.dialect.name == "sqlite" else value
    )


def _datetime_from_sqlite(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


# The same conversions as _to_sqlite / _from_sqlite, one function per kind ("plain": none),
# looked up once per column: binding and decoding run for every column of every row.
_TO_SQLITE = {
    "datetime": _sqlite_datetime,
    "json": jsontext.dumps,  # orjson: ten times cheaper on the contexts deliveries store
    "money": float,
    "bool": int,
    "date": date.isoformat,
}
_FROM_SQLITE = {
    "datetime": _datetime_from_sqlite,
    "json": jsontext.loads,
    "money": _money_from_sqlite,
    "bool": bool,
    "date": date.fromisoformat,
}


def _from_sqlite(kind: str, value: Any) -> Any:
    convert = _FROM_SQLITE.get(kind)
    return value if value is None or convert is None else convert(value)


def param(conn: sa.Connection, kind: str, value: Any) -> Any:
    """One bound value of a hand-named parameter, converted like a column of `kind`."""
    return (_to_pg if conn.dialect.name == "postgresql" else _to_sqlite)(kind, value)


def _to_pg(kind: str, value: Any) -> Any:
    # psycopg's default is the standard json.dumps; each delivery's context is ~1 KB.
    return Jsonb(value, dumps=jsontext.dumps) if kind == "json" and value is not None else value


class Table:
    """Fast statements over one table, for one connection's dialect."""

    def __init__(self, table: sa.Table):
        self.table = table
        self.kinds = {c.name: _kind(c) for c in table.columns}
        self._to_sqlite = {n: _TO_SQLITE.get(k) for n, k in self.kinds.items()}
        self._converted = frozenset(n for n, fn in self._to_sqlite.items() if fn is not None)
        self._from_sqlite = {n: _FROM_SQLITE.get(k) for n, k in self.kinds.items()}
        self._stmts: dict[tuple, tuple[str, dict[str, Any]]] = {}

    def compiled(self, conn: sa.Connection, key: tuple, build) -> tuple[str, dict[str, Any]]:
        """Any statement over this table, compiled once per dialect under `key`, with the
        values of the constants it binds (`state = 'pending'`, SQLite's `OFFSET 0`)."""
        found = self._stmts.get((key, conn.dialect.name))
        if found is None:
            # sqlite3 takes :name parameters from a dict
            dialect = _SQLITE_NAMED if conn.dialect.name == "sqlite" else conn.dialect
            compiled = build().compile(dialect=dialect)
            constants = {k: v for k, v in compiled.params.items() if v is not None}
            found = self._stmts[(key, conn.dialect.name)] = (str(compiled), constants)
        return found

    def _bind(self, conn: sa.Connection, values: Mapping[str, Any]) -> dict[str, Any]:
        if conn.dialect.name == "postgresql":
            return {k: _to_pg(self.kinds.get(k, "plain"), v) for k, v in values.items()}
        # Copy in C, then convert only the columns that need it (a delivery row has 15
        # columns, 5 of them converted): 3.7 µs a row instead of 4.2 for a loop over all.
        out = dict(values)
        convert = self._to_sqlite
        for k in self._converted.intersection(out):
            if (v := out[k]) is not None:
                out[k] = convert[k](v)
        return out

    def _insert_sql(self, conn: sa.Connection, names: tuple[str, ...]) -> str:
        def build():
            return self.table.insert().values({n: sa.bindparam(n) for n in names})

        return self.compiled(conn, ("insert", names), build)[0]

    def insert(self, conn: sa.Connection, row: Mapping[str, Any]) -> None:
        execute(conn, self._insert_sql(conn, tuple(row)), self._bind(conn, row))

    def insert_many(self, conn: sa.Connection, rows: list[Mapping[str, Any]]) -> None:
        """One executemany for rows that share their keys (the first row's)."""
        sql = self._insert_sql(conn, tuple(rows[0]))
        cursor = conn.connection.dbapi_connection.cursor()
        cursor.executemany(sql, [self._bind(conn, row) for row in rows])

    def _update_sql(self, conn: sa.Connection, names: tuple, conds: tuple) -> str:
        t = self.table

        def build():
            clauses = [t.c.id == sa.bindparam("pk_")] + [
                t.c[c] == sa.bindparam(f"w_{c}") for c in conds
            ]
            return t.update().where(*clauses).values({n: sa.bindparam(n) for n in names})

        return self.compiled(conn, ("update", names, conds), build)[0]

    def _update_params(self, conn: sa.Connection, id_: str, values: Mapping, where: Mapping):
        params = {**self._bind(conn, values), "pk_": id_}
        params.update({f"w_{c}": v for c, v in self._bind(conn, where).items()})
        return params

    def update(
        self,
        conn: sa.Connection,
        id_: str,
        values: Mapping[str, Any],
        where: Mapping[str, Any] | None = None,
    ) -> int:
        """UPDATE … WHERE id = id_ [AND column = value …]; returns the rows changed."""
        where = where or {}
        sql = self._update_sql(conn, tuple(values), tuple(where))
        return execute(conn, sql, self._update_params(conn, id_, values, where)).rowcount

    def update_many(
        self, conn: sa.Connection, changes: list[tuple[str, Mapping[str, Any], Mapping[str, Any]]]
    ) -> None:
        """`update` for many (id, values, where) triples of one shape, as one executemany."""
        sql = self._update_sql(conn, tuple(changes[0][1]), tuple(changes[0][2]))
        params = [self._update_params(conn, *change) for change in changes]
        cursor = conn.connection.dbapi_connection.cursor()
        cursor.executemany(sql, params)

    def select_one(
        self, conn: sa.Connection, column: str, value: Any, names: Iterable[str] | None = None
    ) -> dict | None:
        cols = tuple(names or self.kinds)
        t = self.table
        sql, _ = self.compiled(
            conn,
            ("select", column, cols),
            lambda: sa.select(*[t.c[n] for n in cols]).where(t.c[column] == sa.bindparam("v_")),
        )
        row = execute(conn, sql, {"v_": value}).fetchone()
        return None if row is None else self.decode(conn, cols, row)

    def decode(
        self, conn: sa.Connection, cols: tuple[str, ...], row: tuple, keep: frozenset = frozenset()
    ) -> dict:
        """A driver row as SQLAlchemy would give it (psycopg already converts); columns in
        `keep` stay as SQLite stored them (JSON as its text)."""
        if conn.dialect.name == "postgresql":
            return dict(zip(cols, row, strict=True))
        convert = self._from_sqlite
        out = {}
        for n, v in zip(cols, row, strict=True):
            fn = convert[n]
            out[n] = v if fn is None or v is None or n in keep else fn(v)
        return out


# What a unique or foreign-key violation looks like, wrapped or straight from the driver.
INTEGRITY_ERRORS = (sa.exc.IntegrityError, sqlite3.IntegrityError, psycopg.errors.IntegrityError)


def execute(conn: sa.Connection, sql: str, params: dict[str, Any]):
    cursor = conn.connection.dbapi_connection.cursor()
    cursor.execute(sql, params)
    return cursor
