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


# --- issue 6: API access (store/access.py) and search (store/search.py) ---

TOKEN_ROLES = ("intake", "analyst", "admin")

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    # sha256 of the secret: a stolen database holds no usable token.
    sa.Column("token_sha256", sa.Text, nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime),
    _one_of("role", TOKEN_ROLES),
)

web_sessions = sa.Table(
    "web_sessions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("session_sha256", sa.Text, nullable=False, unique=True),
    sa.Column("token_id", sa.ForeignKey("api_tokens.id"), nullable=False, index=True),
    sa.Column("csrf", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", UTCDateTime, nullable=False, index=True),
    sa.Column("token_id", sa.ForeignKey("api_tokens.id")),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("role", sa.Text),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("target", sa.Text),
    sa.Column("detail", sa.JSON, nullable=False),
    sa.Index("ix_audit_log_actor_at", "actor", "at"),
    sa.Index("ix_audit_log_action_at", "action", "at"),
)

# Every host a report's URLs touched (reported URL, redirects, final URL), labels reversed
# ("com.example.www."), so a domain and all its subdomains are one index range.
report_hosts = sa.Table(
    "report_hosts",
    metadata,
    sa.Column("report_id", sa.ForeignKey("reports.id"), primary_key=True),
    sa.Column("host_key", sa.Text, primary_key=True),
    sa.Index("ix_report_hosts_host_key_report_id", "host_key", "report_id"),
)

# Search filters and pivots on the intake tables.
sa.Index("ix_reports_received_at", reports.c.received_at)
sa.Index("ix_scans_server_ip", scans.c.server_ip)
sa.Index("ix_scans_started_at", scans.c.started_at)
sa.Index("ix_images_sha1", images.c.sha1)
sa.Index("ix_matches_list_id", matches.c.list_id)


# --- issue 5: takedown verification (store/takedown.py, monitor/) ---

TAKEDOWN_STATES = ("monitoring", "removed", "reappeared", "overdue")
VERDICTS = (
    "live", "content_gone", "gone_http", "gone_dns", "gone_connect",
    "legal_451", "denied", "transient", "blocked",
)  # fmt: skip
TAKEDOWN_EVENTS = ("removed", "reappeared", "overdue")

# One referral per report. next_check_at is the source of truth of the schedule; the
# scheduler's Redis sorted set mirrors it and is rebuilt from it when Redis starts empty.
takedowns = sa.Table(
    "takedowns",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("report_id", sa.ForeignKey("reports.id"), nullable=False, unique=True),
    sa.Column("party", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("server_ip", sa.Text),
    # What a check looks for: hashes and direct image URLs of the referred scan.
    sa.Column("evidence", sa.JSON, nullable=False),
    sa.Column("referred_at", UTCDateTime, nullable=False),
    sa.Column("notice_sent_at", UTCDateTime),
    # First negative check of the pair that confirmed the latest removal, and the second.
    sa.Column("removed_at", UTCDateTime),
    sa.Column("confirmed_at", UTCDateTime),
    sa.Column("reopened_at", UTCDateTime),
    # First negative check of a run not yet confirmed.
    sa.Column("pending_since", UTCDateTime),
    sa.Column("step", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_check_at", UTCDateTime),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    _one_of("state", TAKEDOWN_STATES),
)

takedown_checks = sa.Table(
    "takedown_checks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("takedown_id", sa.ForeignKey("takedowns.id"), nullable=False, index=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("verdict", sa.Text, nullable=False),
    # What was fetched and how: stage, identity, status, per-URL verdicts, hashes found.
    sa.Column("detail", sa.JSON, nullable=False),
    _one_of("verdict", VERDICTS),
)

# Outbox of webhook notifications: written with the state change, delivered by a job.
takedown_events = sa.Table(
    "takedown_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("takedown_id", sa.ForeignKey("takedowns.id"), nullable=False, index=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("delivered_to", sa.JSON, nullable=False),
    sa.Column("delivered_at", UTCDateTime),
    _one_of("kind", TAKEDOWN_EVENTS),
)


# --- issue 3: hash lists and matching (store/lists.py, migration 0002_matcher) ---

# Per-list thresholds by signal type ({"phash": 8}); the defaults apply to the others.
hash_lists.append_column(
    sa.Column("thresholds", sa.JSON, nullable=False, server_default=sa.text("'{}'"))
)
# Set when an entry is added or re-enabled, cleared once the retro job has matched the
# stored images against it; the partial index finds the few pending ones in a big list.
list_entries.append_column(
    sa.Column("retro_pending", sa.Boolean, nullable=False, server_default=sa.false())
)
sa.Index(
    "ix_list_entries_retro_pending",
    list_entries.c.list_id,
    sqlite_where=list_entries.c.retro_pending,
    postgresql_where=list_entries.c.retro_pending,
)
# What retro-matching needs beyond the scan document's hashes: dHash, and the query-only
# hashes (mirrored, PDQ orientations, animation frames) as {"phash": [...], "pdq": [...]}.
images.append_column(sa.Column("dhash", sa.Text))
images.append_column(sa.Column("query_hashes", sa.JSON))
