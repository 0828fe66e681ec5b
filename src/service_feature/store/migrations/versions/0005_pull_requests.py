"""pull-request delivery: the pull request opened for a feature's branch

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("features", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pull_request_url", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("pull_request_number", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("features", schema=None) as batch_op:
        batch_op.drop_column("pull_request_number")
        batch_op.drop_column("pull_request_url")
