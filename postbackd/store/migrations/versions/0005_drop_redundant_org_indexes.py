"""drop the org_id indexes of leads, conversions and deliveries (their org_created lead with it)

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TABLES = ("leads", "conversions", "deliveries")


def upgrade() -> None:
    for table in TABLES:
        op.drop_index(f"ix_{table}_org_id", table_name=table)


def downgrade() -> None:
    for table in TABLES:
        op.create_index(f"ix_{table}_org_id", table, ["org_id"], unique=False)
