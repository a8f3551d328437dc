"""The schema, declared once; Alembic migrations are generated from it and frozen."""

from __future__ import annotations

import copyreg
import pickle
import threading
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from postbackd.model import TRACKING_FIELDS, DeliveryState

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)


class UTCDateTime(sa.TypeDecorator):
    """Aware UTC datetimes in and out on both databases (SQLite keeps no offset)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
# The states of a delivery waiting for its time (or for a worker), as literal SQL: a
# partial index is used only by queries whose WHERE repeats its condition, and neither
# SQLite nor PostgreSQL's generic plans can prove it from bound parameters.
WAITING = f"state IN ('{DeliveryState.PENDING.value}', '{DeliveryState.RETRYING.value}')"
# Plain `json` keeps key order on PostgreSQL; partners' field order is part of a postback.
ORDERED_JSON = sa.JSON()
Money = sa.Numeric(18, 4, asdecimal=True)


def _id() -> sa.Column:
    return sa.Column("id", sa.String(40), primary_key=True)


def _org(index: bool = True) -> sa.Column:
    """`index=False` where an (org_id, created_at) index already leads with it: the hot
    tables' inserts paid for a second copy no query needed."""
    return sa.Column(
        "org_id", sa.String(40), sa.ForeignKey("organizations.id"), nullable=False, index=index
    )


def _stamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    ]


_UNIT = threading.local()


def utcnow() -> datetime:
    """Now in UTC; inside a writer unit, that unit's one instant (`unit_clock`)."""
    return getattr(_UNIT, "now", None) or datetime.now(UTC)


def unit_clock(start: bool) -> None:
    """The writer starts a clock for each unit it runs and stops it after: every stamp a
    unit writes (created_at, updated_at, conversion and lease times) is one instant, and
    formatting it for SQLite happens once, not per column (five or six `now()` calls an
    event, each a distinct object, each formatted: ~4% of the writer's time)."""
    _UNIT.now = datetime.now(UTC) if start else None


organizations = sa.Table(
    "organizations",
    metadata,
    _id(),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"),
    sa.Column("currency", sa.String(3), nullable=False, server_default="USD"),
    # CIDRs (or "loopback") outbound postbacks of this organization may reach.
    sa.Column("allowed_targets", JSON, nullable=False, server_default="[]"),
    *_stamps(),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    _id(),
    _org(),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("prefix", sa.String(24), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime),
)

campaigns = sa.Table(
    "campaigns",
    metadata,
    _id(),
    _org(),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("landing_url", sa.Text, nullable=False, server_default=""),
    sa.Column("archived", sa.Boolean, nullable=False, server_default=sa.false()),
    *_stamps(),
)

event_definitions = sa.Table(
    "event_definitions",
    metadata,
    _id(),
    _org(),
    sa.Column("campaign_id", sa.String(40), sa.ForeignKey("campaigns.id"), nullable=False),
    sa.Column("event_id", sa.String(100), nullable=False),
    sa.Column("name", sa.String(200), nullable=False, server_default=""),
    sa.Column("type", sa.String(20), nullable=False),
    sa.Column("allow_duplicates", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("aliases", JSON, nullable=False, server_default="[]"),
    sa.Column("payout", Money),
    sa.Column("archived", sa.Boolean, nullable=False, server_default=sa.false()),
    *_stamps(),
    sa.UniqueConstraint("campaign_id", "event_id"),
)

sources = sa.Table(
    "sources",
    metadata,
    _id(),
    _org(),
    sa.Column("campaign_id", sa.String(40), sa.ForeignKey("campaigns.id"), nullable=False),
    sa.Column("pid", sa.String(100), nullable=False),
    sa.Column("name", sa.String(200), nullable=False, server_default=""),
    sa.Column("type", sa.String(30), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("archived", sa.Boolean, nullable=False, server_default=sa.false()),
    *_stamps(),
    sa.UniqueConstraint("campaign_id", "pid"),
)

leads = sa.Table(
    "leads",
    metadata,
    _id(),
    _org(index=False),
    sa.Column("campaign_id", sa.String(40), sa.ForeignKey("campaigns.id"), nullable=False),
    sa.Column("source_id", sa.String(40), sa.ForeignKey("sources.id")),
    sa.Column("transaction_id", sa.String(64), nullable=False, unique=True),
    sa.Column("exto", sa.String(200)),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("fields", JSON, nullable=False, server_default="{}"),
    *[sa.Column(name, sa.String(500)) for name in TRACKING_FIELDS],
    sa.Column("tcpa_consent", sa.Boolean),
    sa.Column("tcpa_consent_date", sa.Date),
    sa.Column("cost", Money),
    sa.Column("adspend", Money),
    sa.Column("min_price", Money),
    # Request context captured at entry (SPEC 1.4), for {req.*} macros and audits.
    sa.Column("ip", sa.String(64)),
    sa.Column("user_agent", sa.Text),
    sa.Column("referrer", sa.Text),
    sa.Column("landing_url", sa.Text),
    sa.Column("query", JSON, nullable=False, server_default="{}"),
    sa.Column("cookies", JSON, nullable=False, server_default="{}"),
    sa.Column("session_data", JSON, nullable=False, server_default="{}"),
    # Distribution (sold / unsold to a buyer at a price).
    sa.Column("distribution_status", sa.String(20)),
    sa.Column("buyer", sa.String(200)),
    sa.Column("price", Money),
    sa.Column("form_completed_at", UTCDateTime),
    sa.Column("distributed_at", UTCDateTime),
    *_stamps(),
    sa.Index("ix_leads_org_created", "org_id", "created_at"),
)

conversions = sa.Table(
    "conversions",
    metadata,
    _id(),
    _org(index=False),
    sa.Column("campaign_id", sa.String(40), sa.ForeignKey("campaigns.id"), nullable=False),
    sa.Column("lead_id", sa.String(40), sa.ForeignKey("leads.id"), nullable=False, index=True),
    sa.Column(
        "event_definition_id", sa.String(40), sa.ForeignKey("event_definitions.id"), nullable=False
    ),
    sa.Column("event_id", sa.String(100), nullable=False),
    sa.Column("event_type", sa.String(20), nullable=False),
    sa.Column("source_id", sa.String(40), sa.ForeignKey("sources.id")),
    sa.Column("clid", sa.String(200)),
    sa.Column("goal", sa.String(100)),
    sa.Column("exto", sa.String(200)),
    sa.Column("revenue", Money),
    sa.Column("payout", Money),
    sa.Column("currency", sa.String(3)),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("conversion_at", UTCDateTime, nullable=False),
    # "<lead>:<event definition>" when the event forbids duplicates, else NULL: the
    # unique index is what makes duplicate protection hold across processes.
    sa.Column("dedupe_key", sa.String(90), unique=True),
    *_stamps(),
    sa.Index("ix_conversions_org_created", "org_id", "created_at"),
)

conversion_status_history = sa.Table(
    "conversion_status_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "conversion_id", sa.String(40), sa.ForeignKey("conversions.id"), nullable=False, index=True
    ),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("previous_status", sa.String(20)),
    sa.Column("note", sa.Text),
    sa.Column("changed_at", UTCDateTime, nullable=False),
)

postbacks = sa.Table(
    "postbacks",
    metadata,
    _id(),
    _org(),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("campaign_id", sa.String(40), sa.ForeignKey("campaigns.id")),
    sa.Column("source_id", sa.String(40), sa.ForeignKey("sources.id")),
    sa.Column("goal", sa.String(100)),
    sa.Column("trigger", sa.String(30), nullable=False),
    sa.Column("trigger_events", JSON, nullable=False, server_default="[]"),
    sa.Column("trigger_statuses", JSON, nullable=False, server_default="[]"),
    # method, url, format, body, params, headers, auth, success, timeout, retry, filters
    sa.Column("config", ORDERED_JSON, nullable=False),
    # Fernet-encrypted JSON of auth password/token and signing secret; never returned.
    sa.Column("secrets", sa.Text, nullable=False, server_default=""),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("disabled_reason", sa.Text),
    sa.Column("consecutive_failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("archived", sa.Boolean, nullable=False, server_default=sa.false()),
    *_stamps(),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    _id(),
    _org(index=False),
    sa.Column("postback_id", sa.String(40), sa.ForeignKey("postbacks.id"), nullable=False),
    sa.Column("lead_id", sa.String(40), sa.ForeignKey("leads.id")),
    sa.Column("conversion_id", sa.String(40), sa.ForeignKey("conversions.id")),
    sa.Column("trigger", sa.String(30), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime),
    sa.Column("lease_until", UTCDateTime),
    sa.Column("leased_by", sa.String(64)),
    sa.Column("idempotency_key", sa.String(64), nullable=False),
    # Macro context snapshot taken in the transaction that caused the delivery.
    sa.Column("context", JSON, nullable=False),
    sa.Column("skip_filter", sa.String(30)),
    sa.Column("skip_reason", sa.Text),
    sa.Column("missing", JSON, nullable=False, server_default="[]"),
    sa.Column("last_error", sa.String(40)),
    sa.Column("last_status", sa.Integer),
    sa.Column("finished_at", UTCDateTime),
    *_stamps(),
    sa.Index("ix_deliveries_due", "state", "next_attempt_at"),
    # Waiting deliveries by postback, for claims that pass over a busy partner's backlog
    # (`claims.claim_passing_over`). Partial: rows leave it when claimed, and deliveries
    # handed to the worker at ingest (written leased) never enter it.
    sa.Index(
        "ix_deliveries_waiting",
        "postback_id",
        "next_attempt_at",
        sqlite_where=sa.text(WAITING),
        postgresql_where=sa.text(WAITING),
    ),
    sa.Index("ix_deliveries_lease", "state", "lease_until"),
    sa.Index("ix_deliveries_postback", "postback_id", "created_at"),
    sa.Index("ix_deliveries_org_created", "org_id", "created_at"),
)

delivery_attempts = sa.Table(
    "delivery_attempts",
    metadata,
    _id(),
    sa.Column(
        "delivery_id", sa.String(40), sa.ForeignKey("deliveries.id"), nullable=False, index=True
    ),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("method", sa.String(10), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("request_headers", JSON, nullable=False),
    sa.Column("request_body", sa.Text, nullable=False, server_default=""),
    sa.Column("response_status", sa.Integer),
    sa.Column("response_headers", JSON),
    sa.Column("response_body", sa.Text),
    sa.Column("latency_ms", sa.Float),
    sa.Column("error_code", sa.String(40)),
    sa.Column("error_detail", sa.Text),
    sa.Column("worker", sa.String(64)),
)

cap_counters = sa.Table(
    "cap_counters",
    metadata,
    sa.Column("postback_id", sa.String(40), sa.ForeignKey("postbacks.id"), primary_key=True),
    sa.Column("window_key", sa.String(40), primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
)


def table_named(name: str) -> sa.Table:
    return metadata.tables[name]


def _reduce_table(table: sa.Table):
    """Our tables travel by name (units sent to the writer process may name a table)."""
    if metadata.tables.get(table.name) is not table:
        raise pickle.PicklingError(f"table {table.name!r} is not one of postbackd's")
    return table_named, (table.name,)


copyreg.pickle(sa.Table, _reduce_table)
