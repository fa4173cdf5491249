"""Firmware rollouts: each rollout's engine document, and the update commands it sent (issue 12).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the rollouts' tables."""
    op.create_table(
        "rollouts",
        sa.Column("rollout_id", sa.String(length=64), nullable=False),
        sa.Column("release_version", sa.String(length=64), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("rollout_id"),
    )
    with op.batch_alter_table("rollouts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rollouts_phase"), ["phase"], unique=False)
    op.create_table(
        "rollout_commands",
        sa.Column("command_id", sa.String(length=64), nullable=False),
        sa.Column("rollout_id", sa.String(length=64), nullable=False),
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("rollback", sa.Boolean(), nullable=False),
        sa.Column("sent_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("command_id"),
    )
    with op.batch_alter_table("rollout_commands", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rollout_commands_rollout_id"), ["rollout_id"], unique=False)


def downgrade() -> None:
    """Drop the rollouts' tables."""
    with op.batch_alter_table("rollout_commands", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rollout_commands_rollout_id"))
    op.drop_table("rollout_commands")
    with op.batch_alter_table("rollouts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rollouts_phase"))
    op.drop_table("rollouts")
