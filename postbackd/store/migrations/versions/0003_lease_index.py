"""index deliveries by (state, lease_until) for reclaiming expired leases

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_deliveries_lease", "deliveries", ["state", "lease_until"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_lease", table_name="deliveries")
