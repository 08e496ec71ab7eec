"""Hash lists and matching: per-list thresholds, retro-matching bookkeeping, stored dHash
and query-only hashes.

Revision ID: 0002_matcher
Revises: 0001
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_matcher"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("hash_lists") as batch:
        batch.add_column(
            sa.Column("thresholds", sa.JSON(), server_default=sa.text("'{}'"), nullable=False)
        )
    with op.batch_alter_table("list_entries") as batch:
        batch.add_column(
            sa.Column("retro_pending", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    op.create_index(
        "ix_list_entries_retro_pending",
        "list_entries",
        ["list_id"],
        sqlite_where=sa.text("retro_pending"),
        postgresql_where=sa.text("retro_pending"),
    )
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("dhash", sa.Text(), nullable=True))
        batch.add_column(sa.Column("query_hashes", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.drop_column("query_hashes")
        batch.drop_column("dhash")
    op.drop_index("ix_list_entries_retro_pending", table_name="list_entries")
    with op.batch_alter_table("list_entries") as batch:
        batch.drop_column("retro_pending")
    with op.batch_alter_table("hash_lists") as batch:
        batch.drop_column("thresholds")
