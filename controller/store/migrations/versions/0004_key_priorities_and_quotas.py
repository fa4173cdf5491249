"""Partner keys carry the priorities they may use and an optional per-site quota; quotas are counted by index.

Keys issued before this revision may use priority 0 only and get the controller's default quota.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the keys' grants and the index that counts a partner's reservations at a site."""
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("priorities", sa.Text(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("quota_per_site", sa.Integer(), nullable=True))
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.create_index("reservations_by_partner_site_state", ["partner", "site_id", "state"], unique=False)


def downgrade() -> None:
    """Drop the index and the keys' grants."""
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.drop_index("reservations_by_partner_site_state")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("quota_per_site")
        batch_op.drop_column("priorities")
