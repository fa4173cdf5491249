"""The fleet registry moves into the store (it was a raw SQLite file per controller).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the fleet registry's table (rows of an earlier registry file are adopted when a controller starts)."""
    op.create_table(
        "fleet_nodes",
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("birth", sa.LargeBinary(), nullable=False),
        sa.Column("boot_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("last_seen", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("node_id"),
    )


def downgrade() -> None:
    """Drop the fleet registry's table."""
    op.drop_table("fleet_nodes")
