"""Matching against the store's lists: the shared on-disk index, and retro-matching.

The index of the lists as they are now lives under HOTLINE_HOME/index, built once per
lists version and mapped by every process (see matcher.shared). Retro-matching is how a
hotline learns that a page scanned last month held material listed today: when a list
gains entries, the image hashes stored from past scans are matched against those entries
(nothing is fetched again) and what matches is recorded, flagged retro.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matcher import HashList, ImageHashes, Index, IndexBuilder, Match, SharedIndex, split_allowed
from store import Store

from .config import Settings

log = logging.getLogger(__name__)

_shared: dict[Path, SharedIndex] = {}


def current_index(settings: Settings, store: Store) -> Index:
    """The index of the lists as they are now. Cheap unless they changed (one query and,
    in a new process, mapping the arrays); else built once, by one process."""
    root = settings.home / "index"
    shared = _shared.setdefault(root, SharedIndex(root))
    return shared.get(store.lists_version(), lambda: build_index(store))


def build_index(store: Store) -> Index:
    """An index of every enabled entry, read from one snapshot of the store."""
    with store.index_snapshot() as (version, lists, rows):
        builder = IndexBuilder(HashList(hl["name"], hl["kind"], hl["thresholds"]) for hl in lists)
        for count, row in enumerate(rows, 1):
            builder.add(
                row["pk"], row["ref"], row["list"], row["signal_type"], row["hash"], row["category"]
            )
            if count % 1_000_000 == 0:
                log.info("match index %s: %d entries read", version, count)
    return builder.build(version)


def match_document(m: Match) -> dict[str, Any]:
    """How a match appears in the scan document (under "matches" or "allowed")."""
    return {
        "list": m.list,
        "signal_type": m.signal_type,
        "entry_id": m.entry_id,
        "entry_pk": m.entry_pk,
        "category": m.category,
        "distance": m.distance,
        "threshold": m.threshold,
        "retro": False,
    }


def stored_hashes(row: dict[str, Any]) -> ImageHashes:
    """An image's hashes as the images table keeps them, ready to be looked up again."""
    query = row.get("query_hashes") or {}
    return ImageHashes(
        md5=row["md5"],
        sha1=row["sha1"],
        sha256=row["sha256"],
        phash=row["phash"],
        dhash=row.get("dhash"),
        pdq=row["pdq"],
        pdq_quality=row["pdq_quality"],
        query_phashes=tuple(query.get("phash", ())),
        query_pdqs=tuple(query.get("pdq", ())),
    )


def retro_match(settings: Settings, store: Store, list_name: str) -> dict[str, Any]:
    """Match every stored image against the list's entries added or re-enabled since the
    last run; record the matches, flagged retro (idempotent: a match is recorded once).
    An image that matches an allow list gets its allow matches recorded instead."""
    started = time.monotonic()
    hl = store.get_list(list_name)
    builder = IndexBuilder([HashList(hl["name"], hl["kind"], hl["thresholds"])])
    for row in store.pending_entries(list_name):
        builder.add(
            row["pk"], row["ref"], list_name, row["signal_type"], row["hash"], row["category"]
        )
    fresh = builder.build()
    summary = {"list": list_name, "entries": len(fresh), "images": 0, "matches": 0}
    if len(fresh):
        # Whether an image is allowed depends on every allow list, as at scan time.
        current = current_index(settings, store) if hl["kind"] == "known" else None
        for rows in store.image_hashes():
            found = fresh.match_many([stored_hashes(row) for row in rows])
            hits = [(row, ms) for row, ms in zip(rows, found, strict=True) if ms]
            if current is not None and hits:
                now = current.match_many([stored_hashes(row) for row, _ in hits])
                hits = [
                    (row, [*ms, *(m for m in also if m.kind == "allow")])
                    for (row, ms), also in zip(hits, now, strict=True)
                ]
            summary["images"] += len(rows)
            summary["matches"] += _record(store, hits)
            if summary["images"] % 100_000 < len(rows):
                log.info("retro %s: %d images matched so far", list_name, summary["images"])
        store.finish_retro(fresh.entry_pks.tolist())
    log.info(
        "retro %s: %d new entries against %d stored images: %d new matches in %.1f s",
        list_name,
        summary["entries"],
        summary["images"],
        summary["matches"],
        time.monotonic() - started,
    )
    return summary


def catch_up(settings: Settings, store: Store, scan_id: int, used: Index) -> int:
    """If the lists changed while a scan ran, match its stored images against the index
    of now and record what the one it used could not find, flagged retro. (A retro job
    queued by that change may have run before the scan was saved.) Returns how many."""
    if store.lists_version() == used.version:
        return 0
    current = current_index(settings, store)
    added = 0
    for rows in store.image_hashes(scan_id=scan_id):
        found = current.match_many([stored_hashes(row) for row in rows])
        added += _record(store, list(zip(rows, found, strict=True)))
    return added


def _record(store: Store, hits: Sequence[tuple[dict[str, Any], list[Match]]]) -> int:
    reported, allowed = [], []
    for row, ms in hits:
        known, allow = split_allowed(ms)
        reported += [(row["id"], match_document(m)) for m in known]
        allowed += [(row["id"], match_document(m)) for m in allow]
    if not (reported or allowed):
        return 0
    return store.add_retro_matches(reported, allowed)
