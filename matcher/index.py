"""Search over hash-list entries, held in plain numpy arrays that can live on disk.

Per signal type a table holds the distinct codes (identical hashes share one slot) and a
CSR map from slot to entries; the entries' metadata are arrays and string tables too. An
index is therefore a directory of .npy files plus a small JSON manifest, no pickles, and
`Index.load` maps them read-only: every worker process shares one copy in the page cache
instead of building or copying its own.

Exact types are binary-searched. Hamming types are scanned in cache-sized blocks or, for
large tables, searched by multi-index hashing (Norouzi, Punjani and Fleet, CVPR 2012):
each code is cut into m substrings, and two codes within distance d differ by at most
d // m bits in at least one of them, so a query only visits the buckets near its own
substrings and checks the full distance of what it finds there.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from matcher.hashing import ImageHashes
from matcher.signals import SIGNAL_TYPES, SignalType, get_signal_type, preview

LIST_KINDS = ("known", "allow")
FORMAT = 1  # of the directory Index.save writes
_FLUSH = 1 << 16  # entries buffered as Python objects before they become arrays
_CHUNK = 1 << 16  # codes per step of a brute-force scan: its temporaries stay in cache
# Multi-index hashing: the key of each substring as (word, shift, bits), by the codes'
# number of 64-bit words, most significant first, so that the first key follows the
# codes' own sorted order. 64-bit codes: substrings of bits 43-63, 22-42 and 0-21, each
# keyed by its top 20 bits (a key within k bits of the query's whenever its substring
# is; smaller bucket tables for a few more candidates). PDQ: 16 substrings of 16 bits.
_SUBSTRINGS = {
    1: ((0, 44, 20), (0, 23, 20), (0, 2, 20)),
    4: tuple((word, shift, 16) for word in range(4) for shift in (48, 32, 16, 0)),
}
_MIH_MIN_SLOTS = 1 << 18  # below this a scan is fast enough and needs no extra memory
_THREE_BYTE_SLOTS = 1 << 24  # up to this many slots, multi-index orders take 3 bytes a slot


@dataclass(frozen=True)
class HashList:
    """A list as the index needs it: kind "known" (matches are reported) or "allow"
    (known-benign hashes that suppress an image's matches), and its own thresholds per
    signal type where they differ from the defaults."""

    name: str
    kind: str = "known"
    thresholds: Mapping[str, int] = field(default_factory=dict)


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
    entry_pk the stored entry's key, kind its list's kind."""

    list: str
    signal_type: str
    entry_id: str
    entry_pk: int
    category: str | None
    distance: int
    threshold: int
    kind: str = "known"


def split_allowed(matches: Sequence[Match]) -> tuple[list[Match], list[Match]]:
    """(reported, allowed) matches of one image: an image that matches an allow-list entry
    is known benign, so none of its matches is reported; the allow matches say why."""
    allowed = [m for m in matches if m.kind == "allow"]
    return ([] if allowed else list(matches)), allowed


@dataclass(frozen=True)
class _Strings:
    """Many short strings as one UTF-8 blob and their end offsets: mappable, no pickles."""

    blob: np.ndarray
    ends: np.ndarray

    def __getitem__(self, i: int) -> str:
        start = int(self.ends[i - 1]) if i else 0
        return self.blob[start : int(self.ends[i])].tobytes().decode()


class _StringsBuilder:
    def __init__(self) -> None:
        self._blobs: list[bytes] = []
        self._lengths: list[np.ndarray] = []

    def extend(self, strings: list[str]) -> None:
        encoded = [s.encode() for s in strings]
        self._blobs.append(b"".join(encoded))
        self._lengths.append(np.fromiter(map(len, encoded), np.int64, len(encoded)))

    def build(self) -> _Strings:
        lengths = np.concatenate(self._lengths) if self._lengths else np.zeros(0, np.int64)
        return _Strings(np.frombuffer(b"".join(self._blobs), np.uint8), np.cumsum(lengths))


@dataclass(frozen=True)
class _Entries:
    """Entry metadata by row: stored key, list number, category number (-1 for none) and
    ref ("" stands for the stored key, as lists without ids are shown)."""

    pk: np.ndarray
    list_no: np.ndarray
    category_no: np.ndarray
    refs: _Strings
    categories: _Strings

    def ref(self, row: int) -> str:
        return self.refs[row] or str(int(self.pk[row]))

    def category(self, row: int) -> str | None:
        number = int(self.category_no[row])
        return None if number < 0 else self.categories[number]


@dataclass(frozen=True)
class _Table:
    """All entries of one signal type.

    Exact types keep `codes` as a sorted fixed-width bytes array; Hamming types as the
    codes' big-endian values in uint64 words shaped (words, slots), sorted, each word row
    contiguous so that a scan reads memory linearly. The entries of slot i are
    `rows[offsets[i]:offsets[i + 1]]`. `substrings` holds, for multi-index hashing, each
    substring's bucket starts and the slots in bucket order (None for the first
    substring, whose order is the codes' own).
    """

    signal: SignalType
    radius: int  # the largest threshold of the lists: the search radius
    codes: np.ndarray
    offsets: np.ndarray
    rows: np.ndarray
    substrings: tuple[tuple[np.ndarray, np.ndarray | None], ...] = ()

    @classmethod
    def build(cls, signal: SignalType, radius: int, packed: np.ndarray, rows: np.ndarray) -> _Table:
        words = signal.hex_digits // 16
        if signal.exact:
            order = np.argsort(packed, kind="stable")
        else:  # sorting numbers is much faster than sorting byte strings
            values = packed.view(">u8").reshape(-1, words).astype(np.uint64)
            order = np.lexsort(values.T[::-1])
        packed = packed[order]
        first = _first_of_runs(packed)
        unique = packed[first]
        index_type = np.int32 if len(rows) < 2**31 else np.int64
        offsets = np.append(np.flatnonzero(first), len(packed)).astype(index_type)
        rows = rows[order].astype(index_type)
        if signal.exact:
            return cls(signal, radius, unique, offsets, rows)
        codes = np.ascontiguousarray(unique.view(">u8").reshape(-1, words).astype(np.uint64).T)
        layout = _SUBSTRINGS[words]
        substrings = ()
        if _worth_multi_index(layout, radius, codes.shape[1]):
            substrings = tuple(_substring_buckets(codes, layout, j) for j in range(len(layout)))
        return cls(signal, radius, codes, offsets, rows, substrings)

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays by file name stem, for saving."""
        named = {"codes": self.codes, "offsets": self.offsets, "rows": self.rows}
        for j, (starts, order) in enumerate(self.substrings):
            named[f"mih{j}.starts"] = starts
            if order is not None:
                named[f"mih{j}.order"] = order
        return named

    def search(self, queries: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(query positions, slots, distances) of every slot within radius of a query."""
        packed = _pack(self.signal, queries)
        if self.signal.exact:
            slots = np.searchsorted(self.codes, packed).clip(max=len(self.codes) - 1)
            hits = np.flatnonzero(self.codes[slots] == packed)
            return hits, slots[hits], np.zeros(len(hits), dtype=np.int64)
        words = packed.view(">u8").reshape(len(packed), -1).astype(np.uint64)
        if self.substrings:
            return self._probe(words)
        return self._scan(words)

    def _scan(self, words: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Brute force over 1-D blocks of _CHUNK: the longer of codes and queries is
        scanned, once per item of the shorter one (numpy is fastest XOR-ing a contiguous
        array with one value; 2-D broadcasting is several times slower)."""
        queries = np.ascontiguousarray(words.T)  # (words, queries), like the codes
        swap = queries.shape[1] > self.codes.shape[1]
        outer, inner = (self.codes, queries) if swap else (queries, self.codes)
        found = []
        for i in range(outer.shape[1]):
            values = outer[:, i]
            for s0 in range(0, inner.shape[1], _CHUNK):
                block = inner[:, s0 : s0 + _CHUNK]
                distance = np.bitwise_count(block[0] ^ values[0])
                if len(values) > 1:  # PDQ: 256 differing bits would overflow uint8
                    distance = distance.astype(np.uint16)
                    for word, value in zip(block[1:], values[1:], strict=True):
                        distance += np.bitwise_count(word ^ value)
                hits = np.flatnonzero(distance <= self.radius)
                if len(hits):
                    mine = np.full(len(hits), i, dtype=np.int64)
                    pair = (hits + s0, mine) if swap else (mine, hits + s0)
                    found.append((*pair, distance[hits]))
        return _concat(found)

    def _probe(self, words: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Multi-index hashing: candidates from the buckets within radius // m bits of
        each of the m substrings of each query, then their full distance."""
        layout = _SUBSTRINGS[words.shape[1]]
        within = self.radius // len(layout)
        found_q, found_s = [], []
        for (word, shift, bits), (starts, order) in zip(layout, self.substrings, strict=True):
            own = (words[:, word] >> np.uint64(shift)) & np.uint64((1 << bits) - 1)
            keys = own.astype(np.int64)[:, None] ^ _flips(bits, within)[None, :]
            first = starts[keys].astype(np.int64)
            counts = starts[keys + 1].astype(np.int64) - first
            positions = _ranges(first.ravel(), counts.ravel())
            found_q.append(np.repeat(np.arange(len(words)), counts.sum(axis=1)))
            found_s.append(positions if order is None else _slots(order, positions))
        slots = self.codes.shape[1]
        pairs = np.sort(np.concatenate(found_q) * slots + np.concatenate(found_s))
        q, s = np.divmod(pairs[_first_of_runs(pairs)], slots)  # a slot found twice: once
        distance = np.zeros(len(q), dtype=np.uint16)
        for word in range(words.shape[1]):
            distance += np.bitwise_count(self.codes[word][s] ^ words[q, word])
        near = distance <= self.radius
        return q[near], s[near], distance[near]


def _first_of_runs(ordered: np.ndarray) -> np.ndarray:
    """Mask of the items of a sorted array that differ from their predecessor."""
    first = np.ones(len(ordered), dtype=bool)
    first[1:] = ordered[1:] != ordered[:-1]
    return first


def _worth_multi_index(layout: tuple[tuple[int, int, int], ...], radius: int, slots: int) -> bool:
    """Whether multi-index hashing beats a scan here by far (visiting buckets and
    candidates against reading every code), with bucket tables of at most half the
    codes' size."""
    if slots < _MIH_MIN_SLOTS:
        return False
    within = radius // len(layout)
    buckets = sum(len(_flips(bits, within)) for _, _, bits in layout)
    candidates = sum(len(_flips(bits, within)) * slots / 2**bits for _, _, bits in layout)
    table_bytes = sum(4 * 2**bits for _, _, bits in layout)
    code_bytes = slots * 8 * max(word for word, _, _ in layout) + slots * 8
    return buckets + candidates < slots / 16 and table_bytes <= code_bytes / 2


def _substring_buckets(
    codes: np.ndarray, layout: tuple[tuple[int, int, int], ...], j: int
) -> tuple[np.ndarray, np.ndarray | None]:
    word, shift, bits = layout[j]
    keys = ((codes[word] >> np.uint64(shift)) & np.uint64((1 << bits) - 1)).astype(np.int64)
    starts = np.zeros((1 << bits) + 1, dtype=np.uint32 if len(keys) < 2**32 else np.int64)
    np.cumsum(np.bincount(keys, minlength=1 << bits), out=starts[1:])
    if j == 0:
        return starts, None
    order = np.argsort(keys, kind="stable")
    if len(keys) > _THREE_BYTE_SLOTS:
        return starts, order.astype(np.uint32 if len(keys) < 2**32 else np.int64)
    # A slot number in 3 bytes (little-endian, one after the other): a quarter less
    # memory than uint32.
    return starts, order.astype("<u4").view(np.uint8).reshape(-1, 4)[:, :3].ravel()


def _slots(order: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """order[positions] as int64, from either form _substring_buckets stores."""
    if order.dtype != np.uint8:
        return order[positions].astype(np.int64)
    first = positions * 3
    return (
        order[first].astype(np.int64)
        | order[first + 1].astype(np.int64) << 8
        | order[first + 2].astype(np.int64) << 16
    )


@functools.cache
def _flips(bits: int, within: int) -> np.ndarray:
    """Every mask of at most `within` set bits among `bits`."""
    masks = [
        sum(1 << b for b in chosen)
        for k in range(within + 1)
        for chosen in itertools.combinations(range(bits), k)
    ]
    flips = np.array(masks, dtype=np.int64)
    flips.flags.writeable = False
    return flips


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The concatenation of arange(start, start + count) for each pair, without a loop."""
    total = int(counts.sum())
    ends = np.cumsum(counts)
    return np.arange(total, dtype=np.int64) + np.repeat(starts - (ends - counts), counts)


def _concat(found: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not found:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return tuple(np.concatenate(parts) for parts in zip(*found, strict=True))


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


def _limits(lists: Sequence[HashList], thresholds: Mapping[str, int] | None) -> dict[str, list]:
    """Threshold per signal type per list number: the list's own, else `thresholds`,
    else the signal type's default. Raises ValueError for an impossible one."""
    base = {name: s.default_threshold for name, s in SIGNAL_TYPES.items()}
    base.update(check_thresholds(thresholds or {}))
    per_list = [base | check_thresholds(hash_list.thresholds) for hash_list in lists]
    return {name: [limits[name] for limits in per_list] for name in SIGNAL_TYPES}


def check_thresholds(thresholds: Mapping[str, int]) -> dict[str, int]:
    """Thresholds by canonical signal type name; ValueError names an impossible one."""
    checked = {}
    for name, limit in thresholds.items():
        signal = get_signal_type(name)
        if limit < 0 or (signal.exact and limit != 0):
            rule = "0 (exact match)" if signal.exact else "0 or more"
            raise ValueError(f"threshold for {signal.name} must be {rule}, got {limit}")
        checked[signal.name] = limit
    return checked


class IndexBuilder:
    """Collects entries into arrays, so that millions of them take array memory, not
    Python objects; `build()` then makes the Index."""

    def __init__(
        self, lists: Iterable[HashList] = (), thresholds: Mapping[str, int] | None = None
    ) -> None:
        self._lists = list(lists)
        for hash_list in self._lists:
            if hash_list.kind not in LIST_KINDS:
                raise ValueError(f"list {hash_list.name!r}: kind must be known or allow")
        self._list_no = {hash_list.name: no for no, hash_list in enumerate(self._lists)}
        self._thresholds = thresholds
        _limits(self._lists, thresholds)  # fail early on a bad threshold
        self._category_no: dict[str, int] = {}
        self._categories = _StringsBuilder()
        self._refs = _StringsBuilder()
        self._columns: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._codes: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        self._rows = 0
        self._pending: list[tuple[int, int, int, str]] = []
        self._pending_hashes: dict[str, tuple[list[str], list[int]]] = {}

    def add(
        self,
        pk: int,
        ref: str | None,
        list_name: str,
        signal_type: str,
        value: str,
        category: str | None,
    ) -> None:
        """One entry; a list not named at construction is a known list with defaults."""
        if signal_type not in SIGNAL_TYPES:
            raise ValueError(f"entry {pk}: unknown signal type {preview(signal_type)}")
        row = self._rows + len(self._pending)
        self._pending.append((pk, self._list(list_name), self._category(category), ref or ""))
        hashes, rows = self._pending_hashes.setdefault(signal_type, ([], []))
        hashes.append(value)
        rows.append(row)
        if len(self._pending) >= _FLUSH:
            self._flush()

    def add_codes(
        self, signal_type: str, list_name: str, packed: np.ndarray, pks: np.ndarray
    ) -> None:
        """Entries in bulk, without refs or categories: `packed` holds the hashes as
        fixed-width bytes (what bytes.fromhex gives), one per key in `pks`."""
        self._flush()
        signal = get_signal_type(signal_type)
        packed = np.asarray(packed).view(f"S{signal.hex_digits // 2}").ravel()
        count = len(packed)
        if len(pks) != count:
            raise ValueError(f"{count} hashes but {len(pks)} keys")
        self._columns.append(
            (
                np.asarray(pks, dtype=np.int64),
                np.full(count, self._list(list_name), dtype=np.int32),
                np.full(count, -1, dtype=np.int32),
            )
        )
        self._refs.extend([""] * count)
        self._codes.setdefault(signal.name, []).append(
            (packed, np.arange(self._rows, self._rows + count, dtype=np.int64))
        )
        self._rows += count

    def build(self, version: str | None = None) -> Index:
        self._flush()
        limits = _limits(self._lists, self._thresholds)
        empty = (np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32))
        columns = [np.concatenate(c) for c in zip(empty, *self._columns, strict=True)]
        entries = _Entries(*columns, self._refs.build(), self._categories.build())
        tables = {}
        for name, parts in self._codes.items():
            list_nos = np.unique(np.concatenate([entries.list_no[rows] for _, rows in parts]))
            radius = max(limits[name][no] for no in list_nos.tolist())
            packed, rows = (np.concatenate(p) for p in zip(*parts, strict=True))
            tables[name] = _Table.build(SIGNAL_TYPES[name], radius, packed, rows)
        return Index(tuple(self._lists), limits, entries, tables, version)

    def _list(self, name: str) -> int:
        if name not in self._list_no:
            self._list_no[name] = len(self._lists)
            self._lists.append(HashList(name))
        return self._list_no[name]

    def _category(self, category: str | None) -> int:
        if category is None:
            return -1
        if category not in self._category_no:
            self._category_no[category] = len(self._category_no)
            self._categories.extend([category])
        return self._category_no[category]

    def _flush(self) -> None:
        if not self._pending:
            return
        pks, list_nos, category_nos, refs = zip(*self._pending, strict=True)
        self._columns.append(
            (
                np.array(pks, dtype=np.int64),
                np.array(list_nos, dtype=np.int32),
                np.array(category_nos, dtype=np.int32),
            )
        )
        self._refs.extend(list(refs))
        for name, (hashes, rows) in self._pending_hashes.items():
            packed = _pack(SIGNAL_TYPES[name], hashes)
            self._codes.setdefault(name, []).append((packed, np.array(rows, dtype=np.int64)))
        self._rows += len(self._pending)
        self._pending = []
        self._pending_hashes = {}


class Index:
    """Finds the list entries an image matches."""

    def __init__(
        self,
        lists: tuple[HashList, ...],
        limits: dict[str, list[int]],
        entries: _Entries,
        tables: dict[str, _Table],
        version: str | None = None,
    ) -> None:
        self.lists = lists
        self.version = version  # what it was built from, e.g. the store's lists version
        self._limits = limits
        self._entries = entries
        self._tables = tables

    @classmethod
    def build(
        cls,
        entries: Iterable[Entry],
        thresholds: Mapping[str, int] | None = None,
        lists: Iterable[HashList] = (),
    ) -> Index:
        """Index entries. `thresholds` overrides the signal types' default thresholds, a
        list's own thresholds override both. Raises ValueError for an unknown signal type,
        a malformed hash or an impossible threshold."""
        builder = IndexBuilder(lists, thresholds)
        for e in entries:
            builder.add(e.id, e.ref, e.list, e.signal_type, e.hash, e.category)
        return builder.build()

    def __len__(self) -> int:
        return len(self._entries.pk)

    @property
    def entry_pks(self) -> np.ndarray:
        """The stored keys of all entries."""
        return self._entries.pk

    def save(self, directory: Path) -> None:
        """Write the index into `directory` (created; it must not exist yet)."""
        directory.mkdir(parents=True)
        for name, array in self._arrays().items():
            np.save(directory / f"{name}.npy", array, allow_pickle=False)
        manifest = {
            "format": FORMAT,
            "version": self.version,
            "lists": [
                {"name": hl.name, "kind": hl.kind, "thresholds": dict(hl.thresholds)}
                for hl in self.lists
            ],
            "limits": self._limits,
            "tables": {
                name: {"radius": table.radius, "substrings": len(table.substrings)}
                for name, table in self._tables.items()
            },
        }
        (directory / "manifest.json").write_text(json.dumps(manifest))

    @classmethod
    def load(cls, directory: Path) -> Index:
        """Map a saved index read-only. Raises FileNotFoundError if it is not there,
        ValueError if it was saved in another format."""
        manifest = json.loads((directory / "manifest.json").read_text())
        if manifest.get("format") != FORMAT:
            raise ValueError(f"{directory}: index format {manifest.get('format')}, not {FORMAT}")

        def array(name: str) -> np.ndarray:
            return np.load(directory / f"{name}.npy", mmap_mode="r", allow_pickle=False)

        entries = _Entries(
            array("entries.pk"),
            array("entries.list_no"),
            array("entries.category_no"),
            _Strings(array("refs.blob"), array("refs.ends")),
            _Strings(array("categories.blob"), array("categories.ends")),
        )
        tables = {}
        for name, info in manifest["tables"].items():
            substrings = tuple(
                (array(f"{name}.mih{j}.starts"), array(f"{name}.mih{j}.order") if j else None)
                for j in range(info["substrings"])
            )
            tables[name] = _Table(
                SIGNAL_TYPES[name],
                info["radius"],
                array(f"{name}.codes"),
                array(f"{name}.offsets"),
                array(f"{name}.rows"),
                substrings,
            )
        lists = tuple(HashList(**hash_list) for hash_list in manifest["lists"])
        return cls(lists, manifest["limits"], entries, tables, manifest["version"])

    def _arrays(self) -> dict[str, np.ndarray]:
        e = self._entries
        named = {
            "entries.pk": e.pk,
            "entries.list_no": e.list_no,
            "entries.category_no": e.category_no,
            "refs.blob": e.refs.blob,
            "refs.ends": e.refs.ends,
            "categories.blob": e.categories.blob,
            "categories.ends": e.categories.ends,
        }
        for name, table in self._tables.items():
            named.update({f"{name}.{stem}": a for stem, a in table.arrays().items()})
        return named

    def nbytes(self) -> int:
        """Bytes of all arrays (what save writes, give or take the file headers)."""
        return sum(a.nbytes for a in self._arrays().values())

    def match(self, h: ImageHashes) -> list[Match]:
        """Matches for one image, best first."""
        return self.match_many([h])[0]

    def match_many(self, hs: Sequence[ImageHashes]) -> list[list[Match]]:
        """Matches for each image, best first; one entry reported once per image at its
        lowest distance over the image's main and query-only hashes, and only within its
        own list's threshold. A page's images are looked up together, each distinct
        hash once."""
        best: list[dict[int, tuple[int, str]]] = [{} for _ in hs]  # row -> distance, type
        list_no = self._entries.list_no
        for name, table in self._tables.items():
            owners: dict[str, list[int]] = {}
            for image, h in enumerate(hs):
                for value in h.hashes_for(name):
                    owners.setdefault(value, []).append(image)
            queries = list(owners)
            if not queries:
                continue
            limits = self._limits[name]
            for q, slot, distance in zip(*(a.tolist() for a in table.search(queries)), strict=True):
                for row in table.rows[table.offsets[slot] : table.offsets[slot + 1]].tolist():
                    if distance > limits[list_no[row]]:
                        continue
                    for image in owners[queries[q]]:
                        if distance < best[image].get(row, (distance + 1,))[0]:
                            best[image][row] = (distance, name)
        return [self._matches(found) for found in best]

    def _matches(self, found: dict[int, tuple[int, str]]) -> list[Match]:
        matches = []
        for row, (distance, signal_type) in found.items():
            hash_list = self.lists[int(self._entries.list_no[row])]
            matches.append(
                Match(
                    list=hash_list.name,
                    signal_type=signal_type,
                    entry_id=self._entries.ref(row),
                    entry_pk=int(self._entries.pk[row]),
                    category=self._entries.category(row),
                    distance=distance,
                    threshold=self._limits[signal_type][int(self._entries.list_no[row])],
                    kind=hash_list.kind,
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
