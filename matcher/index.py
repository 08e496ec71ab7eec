"""In-memory search over hash-list entries.

Per signal type the index holds plain numpy arrays (unique codes, and a CSR map from
code slot to entries) so that a later step can np.save them and load them with
mmap_mode="r" to share one copy between worker processes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from matcher.hashing import ImageHashes
from matcher.signals import SIGNAL_TYPES, SignalType, get_signal_type, preview


@dataclass(frozen=True)
class Entry:
    """One hash of one list, as stored."""

    id: int
    ref: str
    list: str
    signal_type: str
    hash: str
    category: str | None


@dataclass(frozen=True)
class Match:
    """An image hash within `threshold` of a list entry; entry_id is the entry's ref,
    entry_pk the stored entry's key."""

    list: str
    signal_type: str
    entry_id: str
    entry_pk: int
    category: str | None
    distance: int
    threshold: int


@dataclass(frozen=True)
class _Table:
    """All entries of one signal type.

    Exact types keep `codes` as a sorted fixed-width bytes array (binary search);
    Hamming types as uint64 words shaped (words, slots), each word row contiguous so
    a query scans memory linearly. Identical codes share a slot; the entries of slot i
    are `rows[offsets[i]:offsets[i + 1]]`, positions in Index._entries.
    """

    signal: SignalType
    threshold: int
    codes: np.ndarray
    offsets: np.ndarray
    rows: np.ndarray

    @classmethod
    def build(
        cls, signal: SignalType, threshold: int, hashes: list[str], rows: list[int]
    ) -> _Table:
        unique, slot_of = np.unique(_pack(signal, hashes), return_inverse=True)
        order = np.argsort(slot_of, kind="stable")
        offsets = np.zeros(len(unique) + 1, dtype=np.int64)
        np.cumsum(np.bincount(slot_of, minlength=len(unique)), out=offsets[1:])
        if not signal.exact:
            unique = np.ascontiguousarray(unique.view(np.uint64).reshape(len(unique), -1).T)
        return cls(signal, threshold, unique, offsets, np.asarray(rows, dtype=np.int64)[order])

    def search(self, queries: list[str]) -> Iterable[tuple[int, int, int]]:
        """(query position, slot, distance) for every slot within threshold of a query."""
        packed = _pack(self.signal, queries)
        if self.signal.exact:
            slots = np.searchsorted(self.codes, packed).clip(max=len(self.codes) - 1)
            hits = np.flatnonzero(self.codes[slots] == packed)
            return ((q, s, 0) for q, s in zip(hits.tolist(), slots[hits].tolist(), strict=True))
        words = packed.view(np.uint64).reshape(len(packed), -1)
        found = []
        for q, query in enumerate(words):
            distance = np.bitwise_count(self.codes[0] ^ query[0])
            if len(query) > 1:  # PDQ: 256 differing bits would overflow uint8
                distance = distance.astype(np.uint16)
                for row, word in zip(self.codes[1:], query[1:], strict=True):
                    distance += np.bitwise_count(row ^ word)
            slots = np.flatnonzero(distance <= self.threshold)
            found.extend(
                (q, s, d) for s, d in zip(slots.tolist(), distance[slots].tolist(), strict=True)
            )
        return found


def _pack(signal: SignalType, hashes: list[str]) -> np.ndarray:
    """Hex hashes as one fixed-width bytes array, converted in bulk (no per-hash loop)."""
    dtype = f"S{signal.hex_digits // 2}"
    try:
        if all(len(h) == signal.hex_digits for h in hashes):
            packed = np.frombuffer(bytes.fromhex("".join(hashes)), dtype=dtype)
            if len(packed) == len(hashes):
                return packed
    except ValueError:
        pass
    # Not bare hex: normalise one by one, which names the first bad hash.
    return np.frombuffer(bytes.fromhex("".join(map(signal.normalize, hashes))), dtype=dtype)


class Index:
    """Finds the list entries an image matches."""

    def __init__(self, entries: tuple[Entry, ...], tables: dict[str, _Table]) -> None:
        self._entries = entries
        self._tables = tables

    @classmethod
    def build(cls, entries: Iterable[Entry], thresholds: dict[str, int] | None = None) -> Index:
        """Index entries; `thresholds` overrides the signal types' default thresholds.
        Raises ValueError for an unknown signal type or a malformed hash."""
        limits = {name: s.default_threshold for name, s in SIGNAL_TYPES.items()}
        for name, limit in (thresholds or {}).items():
            signal = get_signal_type(name)
            if limit < 0 or (signal.exact and limit != 0):
                rule = "0 (exact match)" if signal.exact else "0 or more"
                raise ValueError(f"threshold for {signal.name} must be {rule}, got {limit}")
            limits[signal.name] = limit
        kept = tuple(entries)
        hashes: dict[str, list[str]] = {}
        rows: dict[str, list[int]] = {}
        for row, entry in enumerate(kept):
            if entry.signal_type not in SIGNAL_TYPES:
                name = preview(entry.signal_type)
                raise ValueError(f"entry {entry.id}: unknown signal type {name}")
            hashes.setdefault(entry.signal_type, []).append(entry.hash)
            rows.setdefault(entry.signal_type, []).append(row)
        tables = {
            name: _Table.build(SIGNAL_TYPES[name], limits[name], hashes[name], rows[name])
            for name in hashes
        }
        return cls(kept, tables)

    def __len__(self) -> int:
        return len(self._entries)

    def match(self, h: ImageHashes) -> list[Match]:
        """Matches for one image, best first."""
        return self.match_many([h])[0]

    def match_many(self, hs: Sequence[ImageHashes]) -> list[list[Match]]:
        """Matches for each image, best first; one entry reported once per image at its
        lowest distance over the image's main and query-only hashes. A page's images
        are looked up together, each distinct hash scanned once."""
        best: list[dict[int, int]] = [{} for _ in hs]  # per image: entry row -> distance
        for name, table in self._tables.items():
            owners: dict[str, list[int]] = {}
            for image, h in enumerate(hs):
                for value in h.hashes_for(name):
                    owners.setdefault(value, []).append(image)
            queries = list(owners)
            if not queries:
                continue
            for q, slot, distance in table.search(queries):
                for row in table.rows[table.offsets[slot] : table.offsets[slot + 1]].tolist():
                    for image in owners[queries[q]]:
                        if distance < best[image].get(row, distance + 1):
                            best[image][row] = distance
        return [self._matches(found) for found in best]

    def _matches(self, found: dict[int, int]) -> list[Match]:
        matches = []
        for row, distance in found.items():
            entry = self._entries[row]
            matches.append(
                Match(
                    list=entry.list,
                    signal_type=entry.signal_type,
                    entry_id=entry.ref,
                    entry_pk=entry.id,
                    category=entry.category,
                    distance=distance,
                    threshold=self._tables[entry.signal_type].threshold,
                )
            )
        # On equal distance an exact match is the stronger evidence, so it comes first.
        return sorted(
            matches,
            key=lambda m: (
                m.distance,
                not SIGNAL_TYPES[m.signal_type].exact,
                m.list,
                m.signal_type,
                m.entry_id,
            ),
        )
