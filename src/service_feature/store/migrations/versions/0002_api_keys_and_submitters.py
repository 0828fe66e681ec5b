"""api keys and submitters

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 03:00:27.535904
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    with op.batch_alter_table("features", schema=None) as batch_op:
        batch_op.add_column(sa.Column("submitted_by", sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f("ix_features_submitted_by"), ["submitted_by"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("features", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_features_submitted_by"))
        batch_op.drop_column("submitted_by")

    op.drop_table("api_keys")
