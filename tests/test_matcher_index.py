"""Index tests on synthetic hashes (photo end-to-end matching is in test_matcher_hashing)."""

import time

import numpy as np
import pytest

import matcher.index
from matcher import Entry, HashList, ImageHashes, Index, Match, split_allowed
from matcher.signals import PDQ

MD5 = "9e107d9d372bb6826bd81d3542a419d6"
PHASH = "c3a5966c6b1e3d0f"
PDQ_HASH = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"


def image(**hashes) -> ImageHashes:
    return ImageHashes(**({"md5": "0" * 32, "sha1": "0" * 40, "sha256": "0" * 64} | hashes))


def flip(value: str, bits: int) -> str:
    """`value` with its lowest `bits` bits inverted: exactly `bits` apart."""
    return f"{int(value, 16) ^ ((1 << bits) - 1):0{len(value)}x}"


def entries(*specs: tuple[str, str, str]) -> list[Entry]:
    """Entries from (list, signal_type, hash); refs are e0, e1, ..."""
    return [
        Entry(i, f"e{i}", lst, signal, value, f"cat-{lst}")
        for i, (lst, signal, value) in enumerate(specs)
    ]


def test_hashes_are_normalised_on_the_way_in():
    index = Index.build(entries(("a", "phash", f" {PHASH.upper()}\n")))
    assert [m.distance for m in index.match(image(phash=PHASH))] == [0]


def test_exact_md5_match_even_for_an_undecodable_image():
    index = Index.build(entries(("iwf", "md5", MD5), ("iwf", "md5", "f" * 32)))
    assert len(index) == 2
    h = ImageHashes(md5=MD5, sha1="0" * 40, sha256="0" * 64, error=("bad_image", "x"))
    assert index.match(h) == [Match("iwf", "md5", "e0", 0, "cat-iwf", 0, 0)]
    assert index.match(image()) == []


def test_hamming_threshold_is_inclusive():
    index = Index.build(entries(("a", "phash", PHASH)))
    assert [m.distance for m in index.match(image(phash=flip(PHASH, 10)))] == [10]
    assert index.match(image(phash=flip(PHASH, 11))) == []


def test_thresholds_override_defaults():
    index = Index.build(entries(("a", "phash", PHASH), ("a", "dhash", PHASH)), {"phash": 4})
    matches = index.match(image(phash=flip(PHASH, 6), dhash=flip(PHASH, 6)))
    assert [(m.signal_type, m.distance, m.threshold) for m in matches] == [("dhash", 6, 10)]


@pytest.mark.parametrize(
    ("thresholds", "message"),
    [
        ({"tlsh": 3}, "unknown signal type"),
        ({"md5": 2}, "threshold for md5 must be 0"),
        ({"pdq": -1}, "threshold for pdq must be 0 or more"),
    ],
)
def test_bad_thresholds(thresholds, message):
    with pytest.raises(ValueError, match=message):
        Index.build([], thresholds)


def test_bad_entries_are_refused():
    with pytest.raises(ValueError, match="phash must be 16 hex digits, got 'xyz'"):
        Index.build(entries(("a", "phash", PHASH), ("a", "phash", "xyz")))
    with pytest.raises(ValueError, match="phash must be 16 hex digits, got 'c3a5966c6b1e3d0'"):
        # Lengths that add up, so only a per-hash check catches them.
        Index.build(entries(("a", "phash", PHASH[:-1]), ("a", "phash", PHASH + "0")))
    with pytest.raises(ValueError, match="unknown signal type 'tlsh'"):
        Index.build(entries(("a", "tlsh", PHASH)))


def test_identical_codes_share_one_slot():
    index = Index.build(
        entries(("a", "phash", PHASH), ("b", "phash", PHASH), ("a", "phash", flip(PHASH, 30)))
    )
    table = index._tables["phash"]
    assert table.codes.shape == (1, 2)  # (words, distinct codes)
    assert sorted(np.diff(table.offsets).tolist()) == [1, 2]  # entries per slot
    assert [(m.list, m.entry_id) for m in index.match(image(phash=PHASH))] == [
        ("a", "e0"),
        ("b", "e1"),
    ]


def test_best_distance_per_entry_over_query_hashes():
    index = Index.build(entries(("a", "phash", PHASH), ("a", "phash", flip(PHASH, 8))))
    h = image(phash=flip(PHASH, 6), query_phashes=(flip(PHASH, 2), flip(PHASH, 7)))
    assert [(m.entry_id, m.distance) for m in index.match(h)] == [("e1", 1), ("e0", 2)]


def test_pdq_distance_does_not_overflow():
    index = Index.build(entries(("a", "pdq", "0" * 64)), {"pdq": 256})
    assert [m.distance for m in index.match(image(pdq="f" * 64, pdq_quality=100))] == [256]


def test_low_quality_pdq_is_not_looked_up():
    index = Index.build(entries(("a", "pdq", PDQ_HASH)))
    assert index.match(image(pdq=PDQ_HASH, pdq_quality=PDQ.min_quality - 1)) == []
    assert len(index.match(image(pdq=PDQ_HASH, pdq_quality=PDQ.min_quality))) == 1
    rotated = image(pdq=flip(PDQ_HASH, 200), pdq_quality=20, query_pdqs=(PDQ_HASH,))
    assert len(index.match(rotated)) == 1  # query hashes were vetted when they were made


def test_match_many_keeps_images_apart():
    index = Index.build(entries(("a", "phash", PHASH), ("a", "pdq", PDQ_HASH), ("b", "md5", MD5)))
    hs = [
        image(phash=PHASH, pdq=flip(PDQ_HASH, 5), pdq_quality=90),
        image(),
        ImageHashes(md5=MD5, sha1="0" * 40, sha256="0" * 64, phash=flip(PHASH, 3)),
        image(phash=PHASH),
    ]
    got = [[(m.entry_id, m.distance) for m in ms] for ms in index.match_many(hs)]
    assert got == [[("e0", 0), ("e1", 5)], [], [("e2", 0), ("e0", 3)], [("e0", 0)]]
    assert index.match_many([]) == []


def test_each_list_has_its_own_thresholds():
    lists = [HashList("strict", thresholds={"phash": 4}), HashList("loose")]
    index = Index.build(
        entries(("strict", "phash", PHASH), ("loose", "phash", PHASH)), {"phash": 8}, lists
    )
    found = index.match(image(phash=flip(PHASH, 6)))
    assert [(m.list, m.distance, m.threshold) for m in found] == [("loose", 6, 8)]
    assert len(index.match(image(phash=flip(PHASH, 4)))) == 2
    with pytest.raises(ValueError, match="threshold for md5 must be 0"):
        Index.build([], lists=[HashList("x", thresholds={"md5": 1})])


def test_allow_list_matches_suppress_the_others():
    lists = [HashList("known-a"), HashList("logos", kind="allow")]
    index = Index.build(entries(("known-a", "md5", MD5), ("logos", "phash", PHASH)), None, lists)
    both = index.match(image(phash=flip(PHASH, 2), md5=MD5))
    assert [(m.list, m.kind) for m in both] == [("known-a", "known"), ("logos", "allow")]
    reported, allowed = split_allowed(both)
    assert reported == [] and [m.entry_id for m in allowed] == ["e1"]
    only_known = index.match(image(md5=MD5))
    assert split_allowed(only_known) == (only_known, [])
    with pytest.raises(ValueError, match="kind must be known or allow"):
        Index.build([], lists=[HashList("x", kind="maybe")])


def test_saved_index_is_mapped_and_answers_the_same(tmp_path):
    lists = [HashList("iwf", thresholds={"pdq": 40}), HashList("logos", kind="allow")]
    specs = [
        ("iwf", "md5", MD5),
        ("iwf", "pdq", PDQ_HASH),
        ("iwf", "phash", PHASH),
        ("logos", "dhash", PHASH),
        ("iwf", "sha1", "a" * 40),
    ]
    built = Index.build(
        [Entry(i + 100, f"réf-{i}" if i % 2 else "", *spec, "A1" if i else None)
         for i, spec in enumerate(specs)],
        lists=lists,
    )  # fmt: skip
    built.version = "v1"
    built.save(tmp_path / "v1")
    loaded = Index.load(tmp_path / "v1")
    assert isinstance(loaded._tables["phash"].codes, np.memmap)
    assert (loaded.version, loaded.lists, len(loaded)) == ("v1", built.lists, 5)
    queries = [
        image(md5=MD5, phash=flip(PHASH, 3), dhash=PHASH),
        image(pdq=flip(PDQ_HASH, 35), pdq_quality=90, sha1="a" * 40),
    ]
    assert loaded.match_many(queries) == built.match_many(queries)
    assert [m.entry_id for m in loaded.match(queries[1])] == ["104", "réf-1"]
    assert {m.category for m in loaded.match(queries[0])} == {None, "A1"}
    with pytest.raises(FileNotFoundError):
        Index.load(tmp_path / "missing")


def near_codes(rng: np.random.Generator, digits: int, count: int) -> list[str]:
    return [rng.bytes(digits // 2).hex() for _ in range(count)]


@pytest.mark.parametrize(
    ("signal", "radius", "three_byte_slots"),
    [("phash", 10, 1 << 24), ("phash", 14, 1000), ("pdq", 31, 1 << 24)],
)
def test_multi_index_hashing_finds_what_a_scan_finds(monkeypatch, signal, radius, three_byte_slots):
    rng = np.random.default_rng(11)
    digits = 16 if signal == "phash" else 64
    codes = near_codes(rng, digits, 3000)
    specs = [("a", signal, c) for c in codes]
    scan = Index.build(entries(*specs), {signal: radius})
    monkeypatch.setattr(matcher.index, "_worth_multi_index", lambda *_: True)
    monkeypatch.setattr(matcher.index, "_THREE_BYTE_SLOTS", three_byte_slots)
    probe = Index.build(entries(*specs), {signal: radius})
    assert probe._tables[signal].substrings and not scan._tables[signal].substrings
    narrow = len(codes) <= three_byte_slots  # slot numbers stored in 3 bytes, else uint32
    assert probe._tables[signal].substrings[1][1].dtype == (np.uint8 if narrow else np.uint32)
    # Near neighbours at every distance up to just past the radius, plus random codes.
    queries = [flip(codes[i], d) for i, d in enumerate(range(radius + 3))]
    queries += near_codes(rng, digits, 20)
    hs = [image(**{signal: q, "pdq_quality": 100}) for q in queries]
    assert probe.match_many(hs) == scan.match_many(hs)
    found = [{m.distance for m in ms} for ms in probe.match_many(hs)]
    assert [d in found[d] for d in range(radius + 3)] == [True] * (radius + 1) + [False] * 2


def test_many_queries_against_a_small_table():
    """Retro-matching: a few new entries against many stored images."""
    index = Index.build(entries(("a", "phash", PHASH), ("a", "pdq", PDQ_HASH)))
    hs = [image(phash=flip(PHASH, i % 64), pdq=PDQ_HASH, pdq_quality=80) for i in range(5000)]
    found = index.match_many(hs)
    assert [len(ms) for ms in found[:12]] == [2] * 11 + [1]
    assert sum(len(ms) for ms in found) == 5000 + sum(i % 64 <= 10 for i in range(5000))


@pytest.mark.timeout(30)
def test_a_million_phash_entries():
    rng = np.random.default_rng(5)
    codes = [f"{c:016x}" for c in rng.integers(0, 2**63, size=1_000_000).tolist()]
    started = time.perf_counter()
    index = Index.build(Entry(i, f"r{i}", "big", "phash", c, None) for i, c in enumerate(codes))
    build_seconds = time.perf_counter() - started
    targets = list(range(0, 1_000_000, 50_000))
    queries = [image(phash=flip(codes[t], 3)) for t in targets]
    started = time.perf_counter()
    results = index.match_many(queries)
    per_query = (time.perf_counter() - started) / len(queries)
    for target, matches in zip(targets, results, strict=True):
        assert (f"r{target}", 3) in [(m.entry_id, m.distance) for m in matches]
    # Measured about 1 s and 0.6 ms on the 2-core dev machine; bounds leave room for CI.
    assert build_seconds < 10
    assert per_query < 0.05
