"""Hash-list upkeep and retro-matching bookkeeping (mixed into Store).

Every change to a list moves its version, so workers notice it and map a new index; an
entry added or re-enabled is marked pending until the retro job has matched the stored
images against it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    delete,
    exists,
    func,
    or_,
    select,
    update,
)

from store.schema import hash_lists, images, list_entries, matches, scans

# An entry's own category wins over its list's.
ENTRY_CATEGORY = func.coalesce(list_entries.c.category, hash_lists.c.category)
# Keys per statement when a long list of them goes into IN (...): under every driver's limit.
KEYS_PER_STATEMENT = 500
# Image columns that retro-matching reads back.
IMAGE_HASHES = (
    "id", "scan_id", "md5", "sha1", "sha256", "phash", "dhash", "pdq", "pdq_quality",
    "query_hashes",
)  # fmt: skip


class ListNotFound(LookupError):
    """No hash list has this name."""


class ListInUse(Exception):
    """A list to delete has matches that reports show."""


def list_id(conn: Connection, name: str) -> int:
    found = conn.scalar(select(hash_lists.c.id).where(hash_lists.c.name == name))
    if found is None:
        raise ListNotFound(name)
    return found


class ListStore:
    """Store methods for hash lists beyond create and import (see Store)."""

    engine: Engine

    def get_list(self, name: str) -> dict:
        """name, category, kind, version and thresholds of one list."""
        with self.engine.connect() as conn:
            row = conn.execute(select(hash_lists).where(hash_lists.c.name == name)).one_or_none()
        if row is None:
            raise ListNotFound(name)
        return {key: getattr(row, key) for key in ("name", "category", "kind", "version")} | {
            "thresholds": row.thresholds
        }

    def set_thresholds(self, name: str, thresholds: Mapping[str, int]) -> bool:
        """Merge per-signal-type thresholds (already validated) into the list's; True if
        that changed them (and so the list's version)."""
        with self.engine.begin() as conn:
            hl = conn.execute(
                select(hash_lists.c.id, hash_lists.c.thresholds).where(hash_lists.c.name == name)
            ).one_or_none()
            if hl is None:
                raise ListNotFound(name)
            merged = {**hl.thresholds, **thresholds}
            if merged == hl.thresholds:
                return False
            _bump(conn, hl.id, thresholds=merged)
        return True

    def set_enabled(self, name: str, keys: Iterable[str], enabled: bool) -> int:
        """Enable or disable the entries whose ref or hash is one of `keys`; returns how
        many changed. Re-enabled entries are retro-matched again, as images scanned while
        they were off were not matched against them."""
        changed = 0
        with self.engine.begin() as conn:
            lid = list_id(conn, name)
            for chunk in _chunks(keys):
                values: dict[str, Any] = {"enabled": enabled}
                if enabled:
                    values["retro_pending"] = True
                changed += conn.execute(
                    update(list_entries)
                    .where(
                        list_entries.c.list_id == lid,
                        list_entries.c.enabled != enabled,
                        or_(list_entries.c.ref.in_(chunk), list_entries.c.hash.in_(chunk)),
                    )
                    .values(values)
                ).rowcount
            if changed:
                _bump(conn, lid)
        return changed

    def delete_list(self, name: str, *, with_matches: bool = False) -> dict[str, int]:
        """Delete a list and its entries. While reports show matches of it this raises
        ListInUse, unless `with_matches` deletes those too (the scans' matched flags are
        then recomputed)."""
        with self.engine.begin() as conn:
            lid = list_id(conn, name)
            of_list = matches.c.list_id == lid
            affected = select(images.c.scan_id).join(matches).where(of_list).distinct()
            scan_ids = list(conn.scalars(affected))
            found = conn.scalar(select(func.count()).select_from(matches).where(of_list))
            if found and not with_matches:
                raise ListInUse(
                    f"list {name!r} has {found} matches in {len(scan_ids)} scans; disable its "
                    "entries instead, or delete them with the matches"
                )
            conn.execute(delete(matches).where(of_list))
            entries = conn.execute(delete(list_entries).where(list_entries.c.list_id == lid))
            conn.execute(delete(hash_lists).where(hash_lists.c.id == lid))
            for chunk in _chunks(scan_ids):
                conn.execute(
                    update(scans).where(scans.c.id.in_(chunk)).values(matched=_has_known_match())
                )
        return {"entries": entries.rowcount, "matches": found, "scans": len(scan_ids)}

    def export_entries(self, name: str) -> Iterator[dict]:
        """The list's enabled entries (signal_type, hash, ref, category), streamed."""
        with self.engine.connect() as conn:
            lid = list_id(conn, name)
            query = (
                select(
                    list_entries.c.signal_type,
                    list_entries.c.hash,
                    list_entries.c.ref,
                    list_entries.c.category,
                )
                .where(list_entries.c.list_id == lid, list_entries.c.enabled)
                .order_by(list_entries.c.id)
            )
            for row in conn.execution_options(yield_per=10_000).execute(query).mappings():
                yield dict(row)

    @contextlib.contextmanager
    def index_snapshot(self) -> Iterator[tuple[str, list[dict], Iterator[dict]]]:
        """(lists version, lists, enabled entries) read in one transaction, so the entries
        are exactly those of that version."""
        with self.engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN")  # WAL: a read transaction is a snapshot
            else:
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            version = self.lists_version(conn)
            lists = [
                dict(row)
                for row in conn.execute(
                    select(hash_lists.c.name, hash_lists.c.kind, hash_lists.c.thresholds).order_by(
                        hash_lists.c.id
                    )
                ).mappings()
            ]
            yield version, lists, self.iter_entries(conn)

    def lists_pending_retro(self) -> list[str]:
        """Names of lists with entries not yet retro-matched."""
        pending = (
            select(hash_lists.c.name)
            .where(
                exists().where(
                    list_entries.c.list_id == hash_lists.c.id, list_entries.c.retro_pending
                )
            )
            .order_by(hash_lists.c.name)
        )
        with self.engine.connect() as conn:
            return list(conn.scalars(pending))

    def pending_entries(self, name: str) -> Iterator[dict]:
        """The list's enabled entries awaiting retro-matching, streamed."""
        with self.engine.connect() as conn:
            lid = list_id(conn, name)
            query = (
                select(
                    list_entries.c.id.label("pk"),
                    list_entries.c.ref,
                    list_entries.c.signal_type,
                    list_entries.c.hash,
                    ENTRY_CATEGORY.label("category"),
                )
                .join(hash_lists)
                .where(
                    list_entries.c.list_id == lid,
                    list_entries.c.retro_pending,
                    list_entries.c.enabled,
                )
                .order_by(list_entries.c.id)
            )
            for row in conn.execution_options(yield_per=10_000).execute(query).mappings():
                yield dict(row)

    def finish_retro(self, entry_pks: Iterable[int]) -> None:
        """Mark entries as retro-matched."""
        with self.engine.begin() as conn:
            for chunk in _chunks(entry_pks):
                conn.execute(
                    update(list_entries)
                    .where(list_entries.c.id.in_(chunk))
                    .values(retro_pending=False)
                )

    def image_hashes(self, *, scan_id: int | None = None, batch: int = 5000) -> Iterator[list]:
        """Stored images' hashes (IMAGE_HASHES), in batches by id: each batch is a short
        query of its own, so writers are never held up by a long read."""
        last = 0
        columns = [images.c[name] for name in IMAGE_HASHES]
        while True:
            query = select(*columns).where(images.c.id > last)
            if scan_id is not None:
                query = query.where(images.c.scan_id == scan_id)
            with self.engine.connect() as conn:
                rows = conn.execute(query.order_by(images.c.id).limit(batch)).mappings().all()
            if not rows:
                return
            yield [dict(row) for row in rows]
            last = rows[-1]["id"]

    def add_retro_matches(
        self, reported: list[tuple[int, dict]], allowed: list[tuple[int, dict]]
    ) -> int:
        """Record matches found after the scan, flagged retro: (image id, match document)
        pairs of known lists, and of allow lists; pairs already recorded stay as they
        were. Scans whose images gained a reported match become matched. Returns how
        many pairs were new."""
        found = [(image_id, m | {"retro": True}) for image_id, m in (*reported, *allowed)]
        with self.engine.begin() as conn:
            added = self._insert_matches(conn, found)
            for chunk in _chunks({image_id for image_id, _ in reported}):
                conn.execute(
                    update(scans)
                    .where(scans.c.id.in_(select(images.c.scan_id).where(images.c.id.in_(chunk))))
                    .values(matched=True)
                )
        return added


def _bump(conn: Connection, lid: int, **values: Any) -> None:
    conn.execute(
        update(hash_lists)
        .where(hash_lists.c.id == lid)
        .values(version=hash_lists.c.version + 1, updated_at=datetime.now(UTC), **values)
    )


def _has_known_match() -> Any:
    """Whether a scan (in an UPDATE of scans) has any match of a known list."""
    return exists().where(
        and_(
            images.c.scan_id == scans.c.id,
            matches.c.image_id == images.c.id,
            hash_lists.c.id == matches.c.list_id,
            hash_lists.c.kind == "known",
        )
    )


def _chunks(keys: Iterable[Any]) -> Iterator[list[Any]]:
    keys = iter(keys)
    while chunk := list(islice(keys, KEYS_PER_STATEMENT)):
        yield chunk
