"""Queries analysts run over stored reports: search, hash pivots, statistics.

Exact filters are index lookups. Near-hash (Hamming) queries cannot use a B-tree, so the
perceptual hashes of all stored images are also held in memory as packed 64-bit words and
scanned with numpy: a million images take milliseconds, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from urllib.parse import urlsplit

import numpy as np
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Select,
    and_,
    case,
    extract,
    func,
    or_,
    select,
    true,
)
from sqlalchemy.dialects import postgresql, sqlite

from store.access import iso_values
from store.schema import (
    hash_lists,
    images,
    list_entries,
    matches,
    report_hosts,
    reports,
    scans,
    takedown_checks,
    takedowns,
)

# Image columns per signal type; a 64-digit hash is a SHA-256 or a PDQ hash.
HASH_COLUMNS = {
    "md5": images.c.md5,
    "sha1": images.c.sha1,
    "sha256": images.c.sha256,
    "phash": images.c.phash,
    "pdq": images.c.pdq,
}
NEAR_TYPES = {"phash": 1, "pdq": 4}  # 64-bit words per hash
SORTS = {
    "received_at": reports.c.received_at,
    "id": reports.c.id,
    "url": reports.c.url,
    "state": reports.c.state,
}
# A near-hash query keeps only this many nearest images (a pivot stays readable, and the
# SQL that follows stays bounded).
NEAR_LIMIT = 10_000
# Images committed out of id order (concurrent PostgreSQL transactions) are picked up if
# they land within this many ids of the newest one already loaded.
LOOKBACK = 5_000
LOAD_ROWS = 100_000
ENTRY_CATEGORY = func.coalesce(list_entries.c.category, hash_lists.c.category)
INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def host_key(host: str) -> str:
    """'WWW.Example.com.' → 'com.example.www.': a domain and its subdomains share a prefix."""
    labels = host.strip().lower().rstrip(".").split(".")
    return ".".join(reversed(labels)) + "."


def url_host_keys(urls: Iterable[str | None]) -> set[str]:
    """host_key() of every URL that has a host; malformed URLs are skipped."""
    keys = set()
    for url in urls:
        try:
            host = urlsplit(url or "").hostname
        except ValueError:
            continue
        if host:
            keys.add(host_key(host))
    return keys


@dataclass(frozen=True)
class Near:
    """Images whose `signal_type` hash is within `distance` bits of `value`."""

    signal_type: str
    value: str
    distance: int


@dataclass(frozen=True)
class SearchFilters:
    """What a report search asks for; every filter given must hold (AND)."""

    url: str | None = None
    domain: str | None = None
    server_ip: str | None = None
    hash: tuple[tuple[str, ...], str] | None = None  # (signal types to try, normalized hash)
    near: Near | None = None
    list: str | None = None
    category: str | None = None
    state: str | None = None
    takedown: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    retro: bool | None = None
    matched: bool | None = None


class SearchStore:
    """Store methods for searching reports and pivoting on hashes (mixed into Store)."""

    engine: Engine

    # writing side: called inside the transactions that store reports and scans

    def _record_hosts(self, conn: Connection, report_id: int, urls: Iterable[str | None]) -> None:
        """Index the hosts of a report's URLs for domain search."""
        keys = url_host_keys(urls)
        if keys:
            insert = INSERTS[conn.dialect.name](report_hosts).on_conflict_do_nothing()
            conn.execute(insert, [{"report_id": report_id, "host_key": key} for key in keys])

    # search

    def search_reports(
        self,
        filters: SearchFilters,
        *,
        sort: str = "received_at",
        descending: bool = True,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[int, list[dict]]:
        """(number of matching reports, one page of report summaries)."""
        with self.engine.connect() as conn:
            where = self._where(conn, filters)
            total = conn.scalar(select(func.count()).select_from(reports).where(where))
            ids = list(
                conn.scalars(
                    _ordered(select(reports.c.id).where(where), sort, descending)
                    .offset(offset)
                    .limit(limit)
                )
            )
            return total, _summaries(conn, ids)

    def search_ids(
        self, filters: SearchFilters, *, sort: str = "received_at", descending: bool = True
    ) -> list[int]:
        """Ids of every matching report, in order (exports read their summaries in pages)."""
        with self.engine.connect() as conn:
            where = self._where(conn, filters)
            return list(conn.scalars(_ordered(select(reports.c.id).where(where), sort, descending)))

    def report_summaries(self, ids: list[int]) -> list[dict]:
        """Summaries of these reports, in the order given."""
        with self.engine.connect() as conn:
            return _summaries(conn, ids)

    def _where(self, conn: Connection, f: SearchFilters) -> ColumnElement[bool]:
        report_in = reports.c.id.in_
        conditions: list[ColumnElement[bool]] = []
        if f.url:
            pattern = "%" + _escape_like(f.url) + "%"
            conditions.append(
                or_(
                    reports.c.url.ilike(pattern, escape="\\"),
                    report_in(
                        select(scans.c.report_id).where(
                            scans.c.final_url.ilike(pattern, escape="\\")
                        )
                    ),
                )
            )
        if f.domain:
            key = host_key(f.domain)
            conditions.append(
                report_in(
                    select(report_hosts.c.report_id).where(
                        report_hosts.c.host_key >= key, report_hosts.c.host_key < key[:-1] + "/"
                    )
                )
            )
        if f.server_ip:
            conditions.append(
                report_in(select(scans.c.report_id).where(scans.c.server_ip == f.server_ip))
            )
        if f.hash:
            types, value = f.hash
            conditions.append(
                report_in(
                    select(scans.c.report_id)
                    .join(images)
                    .where(or_(*(HASH_COLUMNS[t] == value for t in types)))
                )
            )
        if f.near:
            near_ids = list(self._near_images(conn, f.near))
            conditions.append(
                report_in(select(scans.c.report_id).join(images).where(images.c.id.in_(near_ids)))
            )
        if f.list or f.category or f.retro is not None:
            conditions.append(_with_match(f))
        if f.matched is not None:
            matched = report_in(select(scans.c.report_id).where(scans.c.matched))
            conditions.append(matched if f.matched else ~matched)
        if f.state:
            conditions.append(reports.c.state == f.state)
        if f.takedown:
            conditions.append(
                report_in(select(takedowns.c.report_id).where(takedowns.c.state == f.takedown))
            )
        if f.since:
            conditions.append(reports.c.received_at >= f.since)
        if f.until:
            conditions.append(reports.c.received_at < f.until)
        return and_(true(), *conditions)

    # hash pivot

    def hash_sightings(
        self,
        signal_type: str,
        value: str,
        *,
        distance: int | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> dict:
        """Everywhere an image with this hash (or, with `distance`, a near one) was seen.

        {"total", "reports", "first_seen", "last_seen", "hosts", "listed", "truncated",
        "sightings": [newest first; nearest first for a near pivot]}.
        """
        distances: dict[int, int] = {}
        with self.engine.connect() as conn:
            if distance is None:
                condition = HASH_COLUMNS[signal_type] == value
            else:
                distances = self._near_images(conn, Near(signal_type, value, distance))
                condition = images.c.id.in_(list(distances))
            sightings = (
                select(*SIGHTING_COLUMNS)
                .select_from(images.join(scans).join(reports))
                .where(condition)
            )
            total, report_count, first, last = conn.execute(
                select(
                    func.count(images.c.id),
                    func.count(scans.c.report_id.distinct()),
                    func.min(scans.c.started_at),
                    func.max(scans.c.started_at),
                )
                .select_from(images.join(scans))
                .where(condition)
            ).one()
            hosts = conn.execute(
                select(report_hosts.c.host_key, func.count())
                .where(
                    report_hosts.c.report_id.in_(
                        select(scans.c.report_id).join(images).where(condition)
                    )
                )
                .group_by(report_hosts.c.host_key)
                .order_by(func.count().desc(), report_hosts.c.host_key)
                .limit(20)
            ).all()
            listed = conn.execute(
                select(
                    hash_lists.c.name.label("list"),
                    hash_lists.c.kind,
                    ENTRY_CATEGORY.label("category"),
                    list_entries.c.ref,
                    list_entries.c.enabled,
                )
                .join(hash_lists)
                .where(list_entries.c.signal_type == signal_type, list_entries.c.hash == value)
                .order_by(hash_lists.c.name)
            ).mappings()
            listed = [dict(row) for row in listed]
            newest = (scans.c.started_at.desc(), images.c.id.desc())
            if distance is None:
                rows = conn.execute(sightings.order_by(*newest).offset(offset).limit(limit))
                page = [dict(row._mapping) for row in rows]
            else:
                rows = [dict(row._mapping) for row in conn.execute(sightings.order_by(*newest))]
                for row in rows:
                    row["distance"] = distances[row["image_id"]]
                rows.sort(key=lambda row: row["distance"])  # stable: newest first within one
                page = rows[offset : offset + limit]
        return {
            "total": total,
            "reports": report_count,
            "first_seen": first and first.isoformat(),
            "last_seen": last and last.isoformat(),
            "hosts": [{"host": _host_of_key(key), "reports": n} for key, n in hosts],
            "listed": listed,
            "truncated": len(distances) >= NEAR_LIMIT,
            "sightings": [iso_values(row) for row in page],
        }

    def seen_image(self, signal_type: str, value: str) -> dict | None:
        """The hashes of one stored image with this exact hash, or None if none was seen."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(*HASH_COLUMNS.values(), images.c.pdq_quality)
                .where(HASH_COLUMNS[signal_type] == value)
                .limit(1)
            ).one_or_none()
        return None if row is None else dict(row._mapping)

    def load_near_index(self) -> None:
        """Read every stored perceptual hash into memory now (seconds per million images),
        so that the first near-hash query does not pay for it."""
        with self.engine.connect() as conn:
            for table in self._hamming.values():
                with table.lock:
                    table.refresh(conn)

    def _near_images(self, conn: Connection, near: Near) -> dict[int, int]:
        """{image id: distance} of the nearest (at most NEAR_LIMIT) images within distance."""
        table = self._hamming[near.signal_type]
        with table.lock:
            table.refresh(conn)
            return table.within(near.value, near.distance, NEAR_LIMIT)

    @cached_property
    def _hamming(self) -> dict[str, _HammingTable]:
        return {
            name: _HammingTable(HASH_COLUMNS[name], words) for name, words in NEAR_TYPES.items()
        }

    # statistics

    def statistics(self, now: datetime | None = None) -> dict:
        """Counts for the dashboard and /api/stats: reports by state, scans today and by
        status, images, matches by list."""
        now = now or datetime.now(UTC)
        today = now.replace(hour=0, minute=0, second=0, microsecond=0)
        by_state, scan_status = self._counts(reports.c.state), self._counts(scans.c.status)
        with self.engine.connect() as conn:
            scans_today = conn.scalar(select(func.count()).where(scans.c.started_at >= today))
            image_count = conn.scalar(select(func.count()).select_from(images))
            by_list = dict(
                conn.execute(
                    select(hash_lists.c.name, func.count(matches.c.id))
                    .join(matches, matches.c.list_id == hash_lists.c.id)
                    .group_by(hash_lists.c.name)
                ).all()
            )
            matches_today, retro = conn.execute(
                select(
                    func.count(case((matches.c.matched_at >= today, 1))),
                    func.count(case((matches.c.retro, 1))),
                )
            ).one()
        return {
            "reports": {"total": sum(by_state.values()), "by_state": by_state},
            "scans": {
                "total": sum(scan_status.values()),
                "today": scans_today,
                "by_status": scan_status,
            },
            "images": image_count,
            "matches": {
                "total": sum(by_list.values()),
                "today": matches_today,
                "retro": retro,
                "by_list": by_list,
            },
        }

    def referral_states(self) -> dict[str, int]:
        """{takedown state: referred reports}."""
        return self._counts(takedowns.c.state)

    def check_verdicts(self) -> dict[str, int]:
        """{verdict: takedown checks}."""
        return self._counts(takedown_checks.c.verdict)

    def _counts(self, column: ColumnElement) -> dict:
        """{value: rows} of one column."""
        with self.engine.connect() as conn:
            return dict(conn.execute(select(column, func.count()).group_by(column)).all())

    def scan_outcomes(self) -> dict[tuple[str, str], int]:
        """{(status, error kind or ""): scans}, for the scans-by-outcome metric."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    scans.c.status, func.coalesce(scans.c.error_kind, ""), func.count()
                ).group_by(scans.c.status, scans.c.error_kind)
            ).all()
        return {(status, kind): n for status, kind, n in rows}

    def scan_durations(self, bounds: Sequence[float]) -> tuple[list[int], float, int]:
        """Cumulative counts of finished scans at or under each bound (seconds), their sum of
        seconds and their count: a Prometheus histogram computed by the database."""
        with self.engine.connect() as conn:
            seconds = _seconds_between(conn, scans.c.started_at, scans.c.finished_at)
            row = conn.execute(
                select(
                    *(func.count(case((seconds <= bound, 1))) for bound in bounds),
                    func.coalesce(func.sum(seconds), 0.0),
                    func.count(),
                ).where(scans.c.finished_at.is_not(None))
            ).one()
        return list(row[: len(bounds)]), float(row[-2]), row[-1]


SIGHTING_COLUMNS = (
    images.c.id.label("image_id"),
    images.c.url.label("image_url"),
    *HASH_COLUMNS.values(),
    images.c.pdq_quality,
    images.c.width,
    images.c.height,
    images.c.bytes,
    images.c.format,
    scans.c.id.label("scan_id"),
    scans.c.started_at.label("seen_at"),
    scans.c.final_url,
    scans.c.server_ip,
    reports.c.id.label("report_id"),
    reports.c.url.label("report_url"),
    reports.c.state.label("report_state"),
)


class _HammingTable:
    """One perceptual hash column of `images`, in memory as (words, n) uint64 chunks.

    Images are only ever added, so a refresh reads the rows past the newest id loaded (less
    LOOKBACK, skipping ids already held). Callers hold `lock` around refresh() and within().
    """

    def __init__(self, column: ColumnElement, words: int) -> None:
        self.column = column
        self.words = words
        self.lock = threading.Lock()
        self.chunks: list[tuple[np.ndarray, np.ndarray]] = []  # (ids, codes[words, n])
        self.newest = 0
        self.recent: set[int] = set()  # ids loaded within LOOKBACK of newest

    def refresh(self, conn: Connection) -> None:
        floor = max(self.newest - LOOKBACK, 0)
        query = (
            select(images.c.id, self.column)
            .where(images.c.id > floor, self.column.is_not(None))
            .order_by(images.c.id)
        )
        result = conn.execution_options(yield_per=LOAD_ROWS).execute(query)
        for part in result.partitions():
            fresh = [(i, h) for i, h in part if i not in self.recent]
            if fresh:
                self._add(fresh)
        result.close()
        self.recent = {i for i in self.recent if i > self.newest - LOOKBACK}
        if len(self.chunks) > 32:  # many small refreshes: merge, so a scan stays vectorised
            ids, codes = zip(*self.chunks, strict=True)
            self.chunks = [(np.concatenate(ids), np.concatenate(codes, axis=1))]

    def _add(self, rows: list[tuple[int, str]]) -> None:
        hex_digits = self.words * 16
        rows = [(i, h) for i, h in rows if len(h) == hex_digits and _is_hex(h)]
        if not rows:
            return
        ids = np.fromiter((i for i, _ in rows), dtype=np.int64, count=len(rows))
        codes = _words("".join(h for _, h in rows), self.words)
        self.chunks.append((ids, np.ascontiguousarray(codes.T)))
        self.newest = max(self.newest, int(ids.max()))
        self.recent.update(i for i, _ in rows if i > self.newest - LOOKBACK)

    def within(self, value: str, distance: int, limit: int) -> dict[int, int]:
        """{image id: distance} of the `limit` nearest images within `distance` bits."""
        query = _words(value, self.words)[0]
        found_ids, found_distances = [], []
        for ids, codes in self.chunks:
            bits = np.bitwise_count(codes[0] ^ query[0]).astype(np.uint16)
            for word in range(1, self.words):
                bits += np.bitwise_count(codes[word] ^ query[word])
            hits = np.flatnonzero(bits <= distance)
            found_ids.append(ids[hits])
            found_distances.append(bits[hits])
        if not found_ids:
            return {}
        ids, bits = np.concatenate(found_ids), np.concatenate(found_distances)
        if len(ids) > limit:
            keep = np.argpartition(bits, limit - 1)[:limit]
            ids, bits = ids[keep], bits[keep]
        return dict(zip(ids.tolist(), bits.tolist(), strict=True))


def _words(hex_hashes: str, words: int) -> np.ndarray:
    """Concatenated hex hashes as an (n, words) uint64 array."""
    return np.frombuffer(bytes.fromhex(hex_hashes), dtype=">u8").reshape(-1, words)


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


def _with_match(f: SearchFilters) -> ColumnElement[bool]:
    """Reports with one match that satisfies the list, category and retro filters together."""
    found = select(scans.c.report_id).select_from(
        matches.join(images).join(scans).join(hash_lists, hash_lists.c.id == matches.c.list_id)
    )
    if f.category:
        found = found.join(list_entries, list_entries.c.id == matches.c.entry_id).where(
            f.category == ENTRY_CATEGORY
        )
    if f.list:
        found = found.where(hash_lists.c.name == f.list)
    if f.retro is not None:
        found = found.where(matches.c.retro if f.retro else ~matches.c.retro)
    return reports.c.id.in_(found)


def _ordered(query: Select, sort: str, descending: bool) -> Select:
    column = SORTS[sort]
    if descending:
        return query.order_by(column.desc(), reports.c.id.desc())
    return query.order_by(column, reports.c.id)


def _summaries(conn: Connection, ids: list[int]) -> list[dict]:
    """One line per report for result lists and exports, in the order of `ids`."""
    if not ids:
        return []
    found = {
        row.id: {
            "id": row.id,
            "url": row.url,
            "source": row.source,
            "received_at": row.received_at.isoformat(),
            "state": row.state,
            "scans": 0,
            "images": 0,
            "matches": 0,
            "final_url": None,
            "server_ips": [],
            "lists": [],
            "categories": [],
            "retro": False,
            "takedown": row.takedown,
        }
        for row in conn.execute(
            select(reports, takedowns.c.state.label("takedown"))
            .outerjoin(takedowns)
            .where(reports.c.id.in_(ids))
        )
    }
    for scan in conn.execute(
        select(scans.c.report_id, scans.c.final_url, scans.c.server_ip)
        .where(scans.c.report_id.in_(ids))
        .order_by(scans.c.id)
    ):
        summary = found[scan.report_id]
        summary["scans"] += 1
        summary["final_url"] = scan.final_url or summary["final_url"]
        if scan.server_ip and scan.server_ip not in summary["server_ips"]:
            summary["server_ips"].append(scan.server_ip)
    for report_id, count in conn.execute(
        select(scans.c.report_id, func.count(images.c.id))
        .join(images)
        .where(scans.c.report_id.in_(ids))
        .group_by(scans.c.report_id)
    ):
        found[report_id]["images"] = count
    for report_id, name, category, retro, count in conn.execute(
        select(scans.c.report_id, hash_lists.c.name, ENTRY_CATEGORY, matches.c.retro, func.count())
        .select_from(
            matches.join(images)
            .join(scans)
            .join(list_entries, list_entries.c.id == matches.c.entry_id)
            .join(hash_lists, hash_lists.c.id == matches.c.list_id)
        )
        .where(scans.c.report_id.in_(ids))
        .group_by(scans.c.report_id, hash_lists.c.name, ENTRY_CATEGORY, matches.c.retro)
    ):
        summary = found[report_id]
        summary["matches"] += count
        summary["retro"] = summary["retro"] or bool(retro)
        for key, value in (("lists", name), ("categories", category)):
            if value is not None and value not in summary[key]:
                summary[key].append(value)
    return [found[report_id] for report_id in ids if report_id in found]


def _seconds_between(conn: Connection, start: ColumnElement, end: ColumnElement) -> ColumnElement:
    if conn.dialect.name == "sqlite":
        return (func.julianday(end) - func.julianday(start)) * 86400.0
    return extract("epoch", end - start)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _host_of_key(key: str) -> str:
    return ".".join(reversed(key.rstrip(".").split(".")))
