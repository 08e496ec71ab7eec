"""Takedown verification: referrals, their checks, and the webhook outbox.

Revision ID: 0002_takedown
Revises: 0001
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_takedown"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "takedowns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("party", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("server_ip", sa.Text(), nullable=True),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("referred_at", TIMESTAMP, nullable=False),
        sa.Column("notice_sent_at", TIMESTAMP, nullable=True),
        sa.Column("removed_at", TIMESTAMP, nullable=True),
        sa.Column("confirmed_at", TIMESTAMP, nullable=True),
        sa.Column("reopened_at", TIMESTAMP, nullable=True),
        sa.Column("pending_since", TIMESTAMP, nullable=True),
        sa.Column("step", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_check_at", TIMESTAMP, nullable=True),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "state IN ('monitoring', 'removed', 'reappeared', 'overdue')",
            name=op.f("ck_takedowns_state"),
        ),
        sa.ForeignKeyConstraint(
            ["report_id"], ["reports.id"], name=op.f("fk_takedowns_report_id_reports")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_takedowns")),
        sa.UniqueConstraint("report_id", name=op.f("uq_takedowns_report_id")),
    )
    op.create_table(
        "takedown_checks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("takedown_id", sa.Integer(), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("verdict", sa.Text(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.CheckConstraint(
            "verdict IN ('live', 'content_gone', 'gone_http', 'gone_dns', 'gone_connect', "
            "'legal_451', 'denied', 'transient', 'blocked')",
            name=op.f("ck_takedown_checks_verdict"),
        ),
        sa.ForeignKeyConstraint(
            ["takedown_id"],
            ["takedowns.id"],
            name=op.f("fk_takedown_checks_takedown_id_takedowns"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_takedown_checks")),
    )
    op.create_index(op.f("ix_takedown_checks_takedown_id"), "takedown_checks", ["takedown_id"])
    op.create_table(
        "takedown_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("takedown_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("delivered_to", sa.JSON(), nullable=False),
        sa.Column("delivered_at", TIMESTAMP, nullable=True),
        sa.CheckConstraint(
            "kind IN ('removed', 'reappeared', 'overdue')", name=op.f("ck_takedown_events_kind")
        ),
        sa.ForeignKeyConstraint(
            ["takedown_id"],
            ["takedowns.id"],
            name=op.f("fk_takedown_events_takedown_id_takedowns"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_takedown_events")),
    )
    op.create_index(op.f("ix_takedown_events_takedown_id"), "takedown_events", ["takedown_id"])


def downgrade() -> None:
    for table in ("takedown_events", "takedown_checks", "takedowns"):
        op.drop_table(table)
