"""Field technicians' swap queue: technicians, their keys, work orders and their history (issue 11).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the swap queue's tables."""
    op.create_table(
        "technicians",
        sa.Column("technician_id", sa.String(length=64), nullable=False),
        sa.Column("start_lat", sa.Double(), nullable=False),
        sa.Column("start_lon", sa.Double(), nullable=False),
        sa.Column("max_stops", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("technician_id"),
    )
    op.create_table(
        "technician_keys",
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("technician_id", sa.String(length=64), nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("key_id"),
    )
    with op.batch_alter_table("technician_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_technician_keys_technician_id"), ["technician_id"], unique=False)
    op.create_table(
        "work_orders",
        sa.Column("order_id", sa.String(length=250), nullable=False),
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("technician_id", sa.String(length=64), nullable=True),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("order_id"),
    )
    with op.batch_alter_table("work_orders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_work_orders_node_id"), ["node_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_work_orders_state"), ["state"], unique=False)
        batch_op.create_index(batch_op.f("ix_work_orders_technician_id"), ["technician_id"], unique=False)
    op.create_table(
        "work_order_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("order_id", sa.String(length=250), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("technician_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("work_order_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_work_order_events_order_id"), ["order_id"], unique=False)


def downgrade() -> None:
    """Drop the swap queue's tables."""
    with op.batch_alter_table("work_order_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_work_order_events_order_id"))
    op.drop_table("work_order_events")
    with op.batch_alter_table("work_orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_work_orders_technician_id"))
        batch_op.drop_index(batch_op.f("ix_work_orders_state"))
        batch_op.drop_index(batch_op.f("ix_work_orders_node_id"))
    op.drop_table("work_orders")
    with op.batch_alter_table("technician_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_technician_keys_technician_id"))
    op.drop_table("technician_keys")
    op.drop_table("technicians")
