"""The store: reports, their scans (hashes and metadata only, never image bytes) and hash lists."""

import contextlib
import hashlib
import os
import weakref
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    URL,
    Connection,
    Engine,
    Insert,
    Row,
    Table,
    create_engine,
    event,
    func,
    insert,
    make_url,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.pool import NullPool

from store.access import AccessStore
from store.lists import ENTRY_CATEGORY, ListStore
from store.lists import list_id as _list_id
from store.schema import (
    LIST_KINDS,
    REPORT_STATES,
    hash_lists,
    images,
    list_entries,
    matches,
    reports,
    scans,
)
from store.search import SearchStore
from store.takedown import TakedownStore

MIGRATIONS = Path(__file__).with_name("migrations")
# Key of the PostgreSQL advisory lock that serializes concurrent migrate() calls ("hotline").
MIGRATION_LOCK = 0x686F746C696E65
# Rows fetched per round trip when streaming list entries.
STREAM_ROWS = 10_000
# Image fields that pass between the scan document and the images table unchanged.
IMAGE_FIELDS = (
    "url", "md5", "sha1", "sha256", "phash", "pdq", "pdq_quality",
    "width", "height", "bytes", "format", "dhash", "query_hashes",
)  # fmt: skip
INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


class ReportNotFound(LookupError):
    """No report has this id."""


class Store(AccessStore, ListStore, SearchStore, TakedownStore):
    """All persistence of the service, on SQLite (one host) or PostgreSQL (several hosts)."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        backend = parsed.get_backend_name()
        if backend == "sqlite":
            self.engine = _sqlite_engine(parsed)
        elif backend == "postgresql":
            # pre_ping: a worker outlives database restarts instead of failing its next report.
            self.engine = create_engine(parsed, pool_pre_ping=True)
        else:
            raise ValueError(f"unsupported database {backend!r}: use sqlite or postgresql")
        # rq forks a work horse per job; it must open its own connections, not share ours.
        os.register_at_fork(after_in_child=partial(_forget_pool, weakref.ref(self.engine)))

    def close(self) -> None:
        """Close pooled connections (tests and short-lived commands)."""
        self.engine.dispose()

    def migrate(self) -> None:
        """Upgrade the schema to the newest revision; every command calls it at start-up.

        Idempotent, and serialized by a lock so that processes starting together don't race.
        """
        with self.engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                # Takes the write lock now and keeps all DDL in this one transaction.
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = conn
            command.upgrade(config, "heads")
            conn.commit()

    def ping(self) -> None:
        """Raise if the database can't be reached."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    # reports

    def add_report(self, url: str, source: str | None = None) -> int:
        """Queue a report; it is committed on return, so an acknowledged report is never lost."""
        now = _utcnow()
        with self.engine.begin() as conn:
            result = conn.execute(
                insert(reports).values(
                    url=url, source=source, state="queued", received_at=now, updated_at=now
                )
            )
            self._record_hosts(conn, result.inserted_primary_key[0], [url])
        return result.inserted_primary_key[0]

    def set_report_state(self, report_id: int, state: str, *, bump_attempts: bool = False) -> None:
        """Move a report on; bump_attempts counts scan attempts, so retries can give up."""
        _check(state, REPORT_STATES, "report state")
        values: dict[str, Any] = {"state": state, "updated_at": _utcnow()}
        if bump_attempts:
            values["attempts"] = reports.c.attempts + 1
        with self.engine.begin() as conn:
            result = conn.execute(update(reports).where(reports.c.id == report_id).values(values))
        if result.rowcount == 0:
            raise ReportNotFound(report_id)

    def reports_in_state(self, *states: str, older_than: datetime | None = None) -> list[int]:
        """Ids of reports in any of these states, oldest first.

        older_than compares with the last state change, so it finds reports stuck in a state.
        """
        for state in states:
            _check(state, REPORT_STATES, "report state")
        query = select(reports.c.id).where(reports.c.state.in_(states))
        if older_than is not None:
            query = query.where(reports.c.updated_at < older_than)
        with self.engine.connect() as conn:
            return list(conn.scalars(query.order_by(reports.c.received_at, reports.c.id)))

    def get_report(self, report_id: int) -> dict:
        """The report with all its scans as scan documents (plus their "id"), newest last."""
        in_report = scans.c.report_id == report_id
        with self.engine.connect() as conn:
            report = conn.execute(select(reports).where(reports.c.id == report_id)).one_or_none()
            if report is None:
                raise ReportNotFound(report_id)
            scan_rows = conn.execute(select(scans).where(in_report).order_by(scans.c.id)).all()
            image_rows = conn.execute(
                select(images).join(scans).where(in_report).order_by(images.c.id)
            ).all()
            match_rows = conn.execute(
                select(
                    matches.c.image_id,
                    hash_lists.c.name,
                    matches.c.signal_type,
                    list_entries.c.id.label("entry_pk"),
                    list_entries.c.ref,
                    ENTRY_CATEGORY.label("category"),
                    matches.c.distance,
                    matches.c.threshold,
                    matches.c.retro,
                    hash_lists.c.kind,
                )
                .select_from(
                    matches.join(list_entries)
                    .join(hash_lists, hash_lists.c.id == matches.c.list_id)
                    .join(images)
                    .join(scans)
                )
                .where(in_report)
                .order_by(matches.c.id)
            ).all()

        # Matches of allow lists are the reason an image is known benign: "allowed".
        matches_of: dict[tuple[int, str], list[dict]] = defaultdict(list)
        for row in match_rows:
            matches_of[row.image_id, row.kind].append(_match_document(row))
        images_of = defaultdict(list)
        for row in image_rows:
            images_of[row.scan_id].append(
                _image_document(row, matches_of[row.id, "known"], matches_of[row.id, "allow"])
            )
        return {
            "id": report.id,
            "url": report.url,
            "source": report.source,
            "received_at": report.received_at.isoformat(),
            "state": report.state,
            "attempts": report.attempts,
            "scans": [
                {"id": row.id, **_scan_document(row, images_of[row.id])} for row in scan_rows
            ],
            "takedown": self.get_takedown(report_id),
        }

    # scans

    def save_scan(self, report_id: int, scan: dict) -> int:
        """Store a scan document in one transaction, so a report never shows half a scan.

        Each match (and "allowed" match) carries "entry_pk" (list_entries.id); list,
        entry_id and category are derived from that entry when the scan is read back.
        """
        with self.engine.begin() as conn:
            if conn.scalar(select(reports.c.id).where(reports.c.id == report_id)) is None:
                raise ReportNotFound(report_id)
            result = conn.execute(insert(scans).values(_scan_row(report_id, scan)))
            scan_id = result.inserted_primary_key[0]
            hops = [hop.get("url") for hop in scan.get("redirects", [])]
            self._record_hosts(conn, report_id, [scan["url"], scan.get("final_url"), *hops])
            if scan.get("images"):
                self._save_images(conn, scan_id, scan["images"])
        return scan_id

    def _save_images(self, conn: Connection, scan_id: int, documents: list[dict]) -> None:
        image_ids = conn.scalars(
            insert(images).returning(images.c.id, sort_by_parameter_order=True),
            [_image_row(scan_id, document) for document in documents],
        ).all()
        self._insert_matches(
            conn,
            [
                (image_id, match)
                for image_id, document in zip(image_ids, documents, strict=True)
                for match in (*document.get("matches", []), *document.get("allowed", []))
            ],
        )

    def _insert_matches(self, conn: Connection, found: list[tuple[int, dict]]) -> int:
        """Record (image id, match document) pairs; a pair already recorded is left as it
        is. Returns how many were new."""
        if not found:
            return 0
        entry_pks = {match["entry_pk"] for _, match in found}
        list_of = dict(
            conn.execute(
                select(list_entries.c.id, list_entries.c.list_id).where(
                    list_entries.c.id.in_(entry_pks)
                )
            ).all()
        )
        if unknown := entry_pks - list_of.keys():
            raise ValueError(f"matches refer to unknown list entries {sorted(unknown)}")
        now = _utcnow()
        return conn.execute(
            self._insert_ignoring_duplicates(matches).execution_options(preserve_rowcount=True),
            [
                {
                    "image_id": image_id,
                    "entry_id": match["entry_pk"],
                    "list_id": list_of[match["entry_pk"]],
                    "signal_type": match["signal_type"],
                    "distance": match.get("distance"),
                    "threshold": match.get("threshold"),
                    "retro": match.get("retro", False),
                    "matched_at": now,
                }
                for image_id, match in found
            ],
        ).rowcount

    # lists

    def create_list(self, name: str, *, category: str | None = None, kind: str = "known") -> int:
        """Id of the list with this name, created if missing (an existing list is kept as is)."""
        _check(kind, LIST_KINDS, "list kind")
        now = _utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                self._insert_ignoring_duplicates(hash_lists).values(
                    name=name, category=category, kind=kind, created_at=now, updated_at=now
                )
            )
            return _list_id(conn, name)

    def add_entries(
        self,
        name: str,
        entries: Iterable[tuple[str, str, str | None, str | None]],
        *,
        batch: int = 5000,
    ) -> tuple[int, int]:
        """Add (signal_type, normalized hash, ref, category) entries; return (added, duplicates).

        Streams in batches, so lists of millions of hashes take bounded memory. One transaction:
        workers see the whole import or none of it, and the list's version moves once.
        """
        if batch < 1:
            raise ValueError(f"batch must be positive, not {batch}")
        now = _utcnow()
        added = seen = 0
        with self.engine.begin() as conn:
            list_id = _list_id(conn, name)
            # executemany with a summed rowcount: fast on both drivers, and it counts the added.
            insert_new = self._insert_ignoring_duplicates(list_entries).execution_options(
                preserve_rowcount=True
            )
            rows = (
                {
                    "list_id": list_id,
                    "signal_type": signal_type,
                    "hash": hash_,
                    "ref": ref,
                    "category": category,
                    "added_at": now,
                    "retro_pending": True,
                }
                for signal_type, hash_, ref, category in entries
            )
            while chunk := list(islice(rows, batch)):
                seen += len(chunk)
                added += conn.execute(insert_new, chunk).rowcount
            if added:
                conn.execute(
                    update(hash_lists)
                    .where(hash_lists.c.id == list_id)
                    .values(version=hash_lists.c.version + 1, updated_at=now)
                )
        return added, seen - added

    def lists(self) -> list[dict]:
        """All lists by name, with counts of their enabled entries per signal type."""
        counts: dict[int, dict[str, int]] = defaultdict(dict)
        with self.engine.connect() as conn:
            for list_id, signal_type, count in conn.execute(
                select(list_entries.c.list_id, list_entries.c.signal_type, func.count())
                .where(list_entries.c.enabled)
                .group_by(list_entries.c.list_id, list_entries.c.signal_type)
            ):
                counts[list_id][signal_type] = count
            rows = conn.execute(select(hash_lists).order_by(hash_lists.c.name)).all()
        return [
            {
                "name": row.name,
                "category": row.category,
                "kind": row.kind,
                "version": row.version,
                "thresholds": row.thresholds,
                "entries": counts[row.id],
                "total": sum(counts[row.id].values()),
            }
            for row in rows
        ]

    def iter_entries(self, conn: Connection | None = None) -> Iterator[dict]:
        """Enabled entries of all lists, streamed (server-side cursor) to build the match
        index; on `conn` when given (a snapshot, see index_snapshot)."""
        query = (
            select(
                list_entries.c.id.label("pk"),
                list_entries.c.ref,
                hash_lists.c.name.label("list"),
                hash_lists.c.kind,
                list_entries.c.signal_type,
                list_entries.c.hash,
                ENTRY_CATEGORY.label("category"),
            )
            .join(hash_lists)
            .where(list_entries.c.enabled)
            .order_by(list_entries.c.id)
        )
        with _connection(self.engine, conn) as conn:
            for row in conn.execution_options(yield_per=STREAM_ROWS).execute(query).mappings():
                yield dict(row)

    def lists_version(self, conn: Connection | None = None) -> str:
        """Fingerprint of all lists; it changes with any list or entry change.

        Read it before iter_entries(), or both on one snapshot: an index is then never
        newer than its label claims.
        """
        with _connection(self.engine, conn) as conn:
            rows = conn.execute(
                select(hash_lists.c.id, hash_lists.c.version).order_by(hash_lists.c.id)
            )
            state = ",".join(f"{list_id}:{version}" for list_id, version in rows)
        return hashlib.sha256(state.encode()).hexdigest()[:16]

    def _insert_ignoring_duplicates(self, table: Table) -> Insert:
        """INSERT … ON CONFLICT DO NOTHING: re-runs and concurrent writers never duplicate."""
        return INSERTS[self.engine.dialect.name](table).on_conflict_do_nothing()


def _sqlite_engine(url: URL) -> Engine:
    if url.database in (None, "", ":memory:"):
        raise ValueError("SQLite needs a database file: reports must survive a restart")
    Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    # No pool: opening a SQLite file is cheap, and no connection can leak across a fork.
    engine = create_engine(url, poolclass=NullPool)
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets workers read while one writes; busy_timeout makes writers queue, not fail."""
    cursor = dbapi_connection.cursor()
    for pragma in ("busy_timeout = 30000", "journal_mode = WAL", "foreign_keys = ON"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


@contextlib.contextmanager
def _connection(engine: Engine, conn: Connection | None) -> Iterator[Connection]:
    """`conn` if given (its owner closes it), else a new connection for the block."""
    if conn is not None:
        yield conn
        return
    with engine.connect() as conn:
        yield conn


def _forget_pool(engine_ref: weakref.ref[Engine]) -> None:
    engine = engine_ref()
    if engine is not None:
        engine.dispose(close=False)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}, not {value!r}")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _error(kind: str | None, message: str | None) -> dict | None:
    return None if kind is None else {"kind": kind, "message": message}


def _scan_row(report_id: int, scan: dict) -> dict:
    error = scan.get("error") or {}
    return {
        "report_id": report_id,
        "url": scan["url"],
        "final_url": scan.get("final_url"),
        "status": scan["status"],
        "error_kind": error.get("kind"),
        "error_message": error.get("message"),
        "http_status": scan.get("http_status"),
        "redirects": scan.get("redirects", []),
        "server_ip": scan.get("server_ip"),
        "started_at": _time(scan["started_at"]),
        "finished_at": _time(scan.get("finished_at")),
        "matched": scan.get("matched", False),
        "blocked": scan.get("blocked", []),
        "meta": scan.get("meta", {}),
    }


def _scan_document(row: Row, image_documents: list[dict]) -> dict:
    return {
        "url": row.url,
        "final_url": row.final_url,
        "status": row.status,
        "error": _error(row.error_kind, row.error_message),
        "http_status": row.http_status,
        "redirects": row.redirects,
        "server_ip": row.server_ip,
        "started_at": _iso(row.started_at),
        "finished_at": _iso(row.finished_at),
        "matched": row.matched,
        "blocked": row.blocked,
        "meta": row.meta,
        "images": image_documents,
    }


def _image_row(scan_id: int, image: dict) -> dict:
    error = image.get("error") or {}
    return {
        "scan_id": scan_id,
        **{field: image.get(field) for field in IMAGE_FIELDS},
        "error_kind": error.get("kind"),
        "error_message": error.get("message"),
    }


def _image_document(row: Row, match_documents: list[dict], allowed: list[dict]) -> dict:
    return {
        **{field: getattr(row, field) for field in IMAGE_FIELDS},
        "error": _error(row.error_kind, row.error_message),
        "matches": match_documents,
        "allowed": allowed,
    }


def _match_document(row: Row) -> dict:
    return {
        "list": row.name,
        "signal_type": row.signal_type,
        "entry_id": row.ref if row.ref is not None else str(row.entry_pk),
        "category": row.category,
        "distance": row.distance,
        "threshold": row.threshold,
        "retro": row.retro,
    }
