"""The migrations build exactly the schema the code declares, on both databases; and the
fair claims' partial index is one the queries can use (its WHERE repeated literally)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.dialects import sqlite

from postbackd.store import claims
from postbackd.store.tables import metadata

sqlite_named = sqlite.dialect(paramstyle="named")


def test_migrations_match_the_declared_schema(engine):
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []


def test_fair_claims_walk_the_partial_index(engine):
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            definition = conn.exec_driver_sql(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_deliveries_waiting'"
            ).scalar()
            assert "WHERE" in definition and "'pending'" in definition
            # Its plans follow statistics (an empty table is scanned, rightly), so they are
            # not asserted here; on 200k rows both claim statements seek this index.
            return
        statements = {
            claims._walk_sql(pg=False): {"after_": "", "walk_": 10, "now_": "9999"},
            claims._claim_waiting_of(pg=False): {"postback_": "p", "now_": "9", "limit_": 1},
        }
        for stmt, params in statements.items():
            compiled = stmt.compile(dialect=sqlite_named)
            bound = {**compiled.params, **params}
            plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", bound).all()
            # every read of deliveries but the update's own primary-key lookup
            reads = [
                row[-1]
                for row in plan
                if row[-1].startswith(("SEARCH deliveries", "SEARCH d ", "SCAN deliveries"))
                and "(id=?)" not in row[-1]
            ]
            assert reads and all("INDEX ix_deliveries_waiting" in r for r in reads), plan
