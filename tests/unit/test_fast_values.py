"""The fast path stores datetimes exactly as SQLAlchemy's column type does (both read them)."""

from datetime import UTC, datetime, timedelta, timezone

import sqlalchemy as sa

from postbackd.store import fast
from postbackd.store.tables import UTCDateTime


def stored_by_sqlalchemy(value: datetime) -> str:
    """The text SQLAlchemy's own INSERT leaves in a SQLite column of our type."""
    table = sa.Table("t", sa.MetaData(), sa.Column("at", UTCDateTime))
    engine = sa.create_engine("sqlite://")
    with engine.begin() as conn:
        table.create(conn)
        conn.execute(table.insert().values(at=value))
        return conn.exec_driver_sql("SELECT at FROM t").scalar()


def test_sqlite_datetimes_match_sqlalchemy():
    plus_two = timezone(timedelta(hours=2))
    values = [
        datetime(2026, 12, 3, 10, 35, 38, 243442, tzinfo=UTC),
        datetime(2026, 12, 3, 10, 35, 38, tzinfo=UTC),  # no microseconds: still six digits
        datetime(2026, 1, 1, 0, 30, tzinfo=plus_two),  # another offset: the day before in UTC
        datetime(1, 1, 1, 3, 0, tzinfo=plus_two).replace(year=2),
        datetime.now(UTC),
    ]
    for value in values:
        assert fast._sqlite_datetime(value) == stored_by_sqlalchemy(value)
        assert fast._datetime_from_sqlite(fast._sqlite_datetime(value)) == value
