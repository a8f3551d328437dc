"""index waiting deliveries by (postback_id, next_attempt_at), partial on their states

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# As in postbackd.store.tables.WAITING, spelled out: a migration must not change later.
WAITING = "state IN ('pending', 'retrying')"


def upgrade() -> None:
    op.create_index(
        "ix_deliveries_waiting",
        "deliveries",
        ["postback_id", "next_attempt_at"],
        sqlite_where=sa.text(WAITING),
        postgresql_where=sa.text(WAITING),
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_waiting", table_name="deliveries")
