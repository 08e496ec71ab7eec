"""API access and search: tokens, web sessions, audit log, report hosts, search indexes.

Revision ID: 0002_access
Revises: 0001
Create Date: 2026-12-05
"""

import json
from collections.abc import Iterator, Sequence
from urllib.parse import urlsplit

import sqlalchemy as sa
from alembic import op

revision: str = "0002_access"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
INDEXES = {
    "ix_reports_received_at": ("reports", ["received_at"]),
    "ix_scans_server_ip": ("scans", ["server_ip"]),
    "ix_scans_started_at": ("scans", ["started_at"]),
    "ix_images_sha1": ("images", ["sha1"]),
    "ix_matches_list_id": ("matches", ["list_id"]),
}


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("token_sha256", sa.Text(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("revoked_at", TIMESTAMP, nullable=True),
        sa.CheckConstraint(
            "role IN ('intake', 'analyst', 'admin')", name=op.f("ck_api_tokens_role")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_api_tokens_token_sha256")),
    )
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_sha256", sa.Text(), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("csrf", sa.Text(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["token_id"], ["api_tokens.id"], name=op.f("fk_web_sessions_token_id_api_tokens")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sessions")),
        sa.UniqueConstraint("session_sha256", name=op.f("uq_web_sessions_session_sha256")),
    )
    op.create_index(op.f("ix_web_sessions_token_id"), "web_sessions", ["token_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=True),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=True),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["token_id"], ["api_tokens.id"], name=op.f("fk_audit_log_token_id_api_tokens")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_at"), "audit_log", ["at"])
    op.create_index("ix_audit_log_actor_at", "audit_log", ["actor", "at"])
    op.create_index("ix_audit_log_action_at", "audit_log", ["action", "at"])
    op.create_table(
        "report_hosts",
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("host_key", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["report_id"], ["reports.id"], name=op.f("fk_report_hosts_report_id_reports")
        ),
        sa.PrimaryKeyConstraint("report_id", "host_key", name=op.f("pk_report_hosts")),
    )
    op.create_index("ix_report_hosts_host_key_report_id", "report_hosts", ["host_key", "report_id"])
    for name, (table, columns) in INDEXES.items():
        op.create_index(name, table, columns)
    _backfill_report_hosts()


def downgrade() -> None:
    for name, (table, _) in INDEXES.items():
        op.drop_index(name, table_name=table)
    for table in ("report_hosts", "audit_log", "web_sessions", "api_tokens"):
        op.drop_table(table)


def _backfill_report_hosts() -> None:
    """Hosts of the reports stored before this revision (frozen copy of store.search's rule)."""
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT r.id, r.url, s.final_url, s.redirects FROM reports r"
            " LEFT JOIN scans s ON s.report_id = r.id"
        )
    )
    keys = {
        (report_id, key)
        for report_id, url, final_url, redirects in rows
        for key in _keys([url, final_url, *_hops(redirects)])
    }
    if keys:
        bind.execute(
            sa.text("INSERT INTO report_hosts (report_id, host_key) VALUES (:r, :k)"),
            [{"r": report_id, "k": key} for report_id, key in keys],
        )


def _hops(redirects: object) -> list[str]:
    if isinstance(redirects, str):  # SQLite hands JSON back as text
        redirects = json.loads(redirects)
    return [hop.get("url") for hop in redirects or [] if isinstance(hop, dict)]


def _keys(urls: list[str | None]) -> Iterator[str]:
    for url in urls:
        try:
            host = urlsplit(url or "").hostname
        except ValueError:
            continue
        if host:
            yield ".".join(reversed(host.rstrip(".").split("."))) + "."
