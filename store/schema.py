"""Tables of the store as SQLAlchemy Core metadata.

Queries use these objects and alembic autogenerate diffs against them; the migrations in
store/migrations/versions are frozen snapshots, kept in step by a test (see test_store.py).
"""

from datetime import UTC, datetime

import sqlalchemy as sa

REPORT_STATES = ("queued", "scanning", "done", "failed")
SCAN_STATUSES = ("completed", "failed")
LIST_KINDS = ("known", "allow")

# Stable constraint names, so later migrations can address them (SQLite batch mode needs names).
metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes in and out; SQLite keeps no zone, so everything is stored as UTC."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store only takes timezone-aware ones")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _one_of(column: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    allowed = ", ".join(f"'{value}'" for value in values)
    return sa.CheckConstraint(f"{column} IN ({allowed})", name=column)


reports = sa.Table(
    "reports",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("source", sa.Text),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    _one_of("state", REPORT_STATES),
    sa.Index("ix_reports_state_received_at", "state", "received_at"),
)

scans = sa.Table(
    "scans",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("report_id", sa.ForeignKey("reports.id"), nullable=False, index=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("final_url", sa.Text),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("error_kind", sa.Text),
    sa.Column("error_message", sa.Text),
    sa.Column("http_status", sa.Integer),
    sa.Column("redirects", sa.JSON, nullable=False),
    sa.Column("server_ip", sa.Text),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime),
    sa.Column("matched", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("blocked", sa.JSON, nullable=False),
    sa.Column("meta", sa.JSON, nullable=False),
    _one_of("status", SCAN_STATUSES),
)

images = sa.Table(
    "images",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("scan_id", sa.ForeignKey("scans.id"), nullable=False, index=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("md5", sa.Text, index=True),
    sa.Column("sha1", sa.Text),
    sa.Column("sha256", sa.Text, index=True),
    sa.Column("phash", sa.Text, index=True),
    sa.Column("pdq", sa.Text, index=True),
    sa.Column("pdq_quality", sa.Integer),
    sa.Column("width", sa.Integer),
    sa.Column("height", sa.Integer),
    sa.Column("bytes", sa.Integer),
    sa.Column("format", sa.Text),
    sa.Column("error_kind", sa.Text),
    sa.Column("error_message", sa.Text),
)

hash_lists = sa.Table(
    "hash_lists",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("category", sa.Text),
    sa.Column("kind", sa.Text, nullable=False, server_default=LIST_KINDS[0]),
    sa.Column("version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    _one_of("kind", LIST_KINDS),
)

list_entries = sa.Table(
    "list_entries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("list_id", sa.ForeignKey("hash_lists.id"), nullable=False),
    sa.Column("signal_type", sa.Text, nullable=False),
    sa.Column("hash", sa.Text, nullable=False),
    sa.Column("ref", sa.Text),
    sa.Column("category", sa.Text),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("added_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("list_id", "signal_type", "hash"),
)

matches = sa.Table(
    "matches",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("image_id", sa.ForeignKey("images.id"), nullable=False),
    sa.Column("entry_id", sa.ForeignKey("list_entries.id"), nullable=False),
    sa.Column("list_id", sa.ForeignKey("hash_lists.id"), nullable=False),
    sa.Column("signal_type", sa.Text, nullable=False),
    sa.Column("distance", sa.Integer),
    sa.Column("threshold", sa.Integer),
    sa.Column("retro", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("matched_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("image_id", "entry_id"),
)
