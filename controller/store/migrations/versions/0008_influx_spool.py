"""Points of control messages waiting for InfluxDB (issue 10): the controller acknowledges them once spooled here.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the spool table."""
    op.create_table(
        "influx_spool",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("queued_at", sa.Double(), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    """Drop the spool table (lines still in it were not written to InfluxDB)."""
    op.drop_table("influx_spool")
