"""postbacks.config as json (key order kept) instead of jsonb

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE postbacks ALTER COLUMN config TYPE json USING config::text::json")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE postbacks ALTER COLUMN config TYPE jsonb USING config::jsonb")
