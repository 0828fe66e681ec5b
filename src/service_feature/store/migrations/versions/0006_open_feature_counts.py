"""open feature counts per API key, kept by triggers; an index of the outbox's unpublished rows

The gateway admits a submission only while its key has fewer than SF_MAX_QUEUED_PER_KEY features that have
not ended. Counting them on every submission grew with the number a key had queued; the database now keeps
the count itself, whatever writes a feature (the API, the worker's transitions, a bulk import), so reading
it costs one row. The statuses that end a feature are written out here as they are at this revision
(`lifecycle.TERMINAL`); a new terminal status needs a migration that redefines the triggers.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TERMINAL_STATUSES = ("delivered", "failed", "rejected", "cancelled")

_TERMINAL = ", ".join(f"'{status}'" for status in TERMINAL_STATUSES)


def _open(row: str) -> str:
    """SQL true when `row` (OLD or NEW) is a feature of an API key that has not ended."""
    return f"({row}.submitted_by IS NOT NULL AND {row}.status NOT IN ({_TERMINAL}))"


# The SQL below is built from this module's constants only (no input reaches it): hence the S608 waivers.


def _increment(row: str) -> str:
    return (
        f"INSERT INTO open_feature_counts (submitted_by, open_features) VALUES ({row}.submitted_by, 1) "  # noqa: S608
        "ON CONFLICT (submitted_by) DO UPDATE "
        "SET open_features = open_feature_counts.open_features + 1;"
    )


def _decrement(row: str) -> str:
    return (
        "UPDATE open_feature_counts SET open_features = open_features - 1 "  # noqa: S608
        f"WHERE submitted_by = {row}.submitted_by;"
    )


# A move between two open statuses of the same key (most of a feature's moves) changes no count, so it
# neither writes nor locks the key's row.
_STAYS_OPEN = f"({_open('OLD')} AND {_open('NEW')} AND OLD.submitted_by = NEW.submitted_by)"

POSTGRES_FUNCTION = f"""
CREATE FUNCTION count_open_features() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND {_STAYS_OPEN} THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') AND {_open("OLD")} THEN
        {_decrement("OLD")}
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND {_open("NEW")} THEN
        {_increment("NEW")}
    END IF;
    RETURN NULL;
END
$$
"""

POSTGRES_TRIGGERS = (
    "CREATE TRIGGER features_open_count AFTER INSERT OR DELETE ON features "
    "FOR EACH ROW EXECUTE FUNCTION count_open_features()",
    "CREATE TRIGGER features_open_count_moved AFTER UPDATE OF status, submitted_by ON features "
    "FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status "
    "OR OLD.submitted_by IS DISTINCT FROM NEW.submitted_by) EXECUTE FUNCTION count_open_features()",
)

SQLITE_TRIGGERS = (
    f"CREATE TRIGGER features_open_count_inserted AFTER INSERT ON features WHEN {_open('NEW')} "
    f"BEGIN {_increment('NEW')} END",
    f"CREATE TRIGGER features_open_count_deleted AFTER DELETE ON features WHEN {_open('OLD')} "
    f"BEGIN {_decrement('OLD')} END",
    "CREATE TRIGGER features_open_count_left AFTER UPDATE OF status, submitted_by ON features "
    f"WHEN {_open('OLD')} AND NOT {_STAYS_OPEN} BEGIN {_decrement('OLD')} END",
    "CREATE TRIGGER features_open_count_entered AFTER UPDATE OF status, submitted_by ON features "
    f"WHEN {_open('NEW')} AND NOT {_STAYS_OPEN} BEGIN {_increment('NEW')} END",
)

SQLITE_TRIGGER_NAMES = (
    "features_open_count_inserted",
    "features_open_count_deleted",
    "features_open_count_left",
    "features_open_count_entered",
)

# Counted after the triggers exist, in the same transaction: on PostgreSQL creating a trigger locks the
# table against writes until the commit, so no feature is missed or counted twice.
BACKFILL = (
    "INSERT INTO open_feature_counts (submitted_by, open_features) "  # noqa: S608
    "SELECT submitted_by, count(*) FROM features "
    f"WHERE submitted_by IS NOT NULL AND status NOT IN ({_TERMINAL}) GROUP BY submitted_by"
)


def upgrade() -> None:
    op.create_table(
        "open_feature_counts",
        sa.Column("submitted_by", sa.String(length=32), nullable=False),
        sa.Column("open_features", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("submitted_by"),
    )
    if op.get_context().dialect.name == "postgresql":
        op.execute(POSTGRES_FUNCTION)
        for statement in POSTGRES_TRIGGERS:
            op.execute(statement)
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)
    op.execute(BACKFILL)
    # The relay reads the oldest unpublished rows: a partial index keeps that read as small as the backlog
    # of unpublished rows, however many published ones the table holds.
    op.create_index(
        "ix_outbox_unpublished",
        "outbox",
        ["id"],
        postgresql_where=sa.text("published_at IS NULL"),
        sqlite_where=sa.text("published_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_unpublished", table_name="outbox")
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP TRIGGER features_open_count_moved ON features")
        op.execute("DROP TRIGGER features_open_count ON features")
        op.execute("DROP FUNCTION count_open_features()")
    else:
        for name in SQLITE_TRIGGER_NAMES:
            op.execute(f"DROP TRIGGER {name}")
    op.drop_table("open_feature_counts")
