"""Matching per core: 1M and 10M pHash entries at radius 10, 1M and 10M PDQ entries at
radius 31.

The entries are random codes generated straight into numpy arrays and handed to
`IndexBuilder.add_codes`: 10M Python Entry objects or store rows would measure Python,
not the index (a store-built index takes the same `build` after reading its rows).
Queries: 100 images whose hash lies within the radius of a listed one (all must be
found) and 100 random ones. Measured: build time (arrays to index, multi-index tables
included), load time (`Index.load`, which maps the saved arrays), ms per query (one
image at a time through `Index.match`, Python included, after one warm-up pass) and per
image when a page of 50 is looked up together, and the memory of two worker processes
that map the index and run the queries: RSS and PSS of the search arrays (codes and
multi-index tables, read by every query) and of all index files (entry metadata too,
paged in by hits), summed over both (PSS splits shared pages between the processes that
map them; RSS counts them in each), against the raw code size (8 or 32 bytes an entry).

Baseline, same run: numpy brute force over the same codes,
np.flatnonzero(np.bitwise_count(codes ^ query) <= radius), one query at a time.

Targets at 10M pHash: ≤ 5 ms per query, load ≤ 2 s, two workers together ≤ 2x the raw
code size. BENCH_MATCHING_SIZES (default 1000000,10000000) sets the sizes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from matcher import ImageHashes, Index, IndexBuilder
from tests.helpers import memory_of_processes

CASES = (("phash", 10, 8), ("pdq", 31, 32))  # signal type, radius, bytes per code
SIZES = [int(n) for n in os.environ.get("BENCH_MATCHING_SIZES", "1000000,10000000").split(",")]
QUERIES = 100  # near ones, and as many random ones


def image(signal: str, code: bytes) -> ImageHashes:
    fields = {"phash": code.hex()} if signal == "phash" else {"pdq": code.hex(), "pdq_quality": 100}
    return ImageHashes(md5="0" * 32, sha1="0" * 40, sha256="0" * 64, **fields)


def near(rng: np.random.Generator, code: np.ndarray, distance: int) -> bytes:
    bits = np.unpackbits(code)
    flip = rng.choice(len(bits), size=distance, replace=False)
    bits[flip] ^= 1
    return np.packbits(bits).tobytes()


def _load_and_query(root: str, queries: list[ImageHashes]) -> Index:
    index = Index.load(Path(root))
    for _ in range(2):
        for h in queries:
            index.match(h)
    return index


def run(signal: str, radius: int, width: int, n: int, scratch: Path) -> dict[str, float]:
    rng = np.random.default_rng(n + width)
    codes = rng.integers(0, 256, (n, width), dtype=np.uint8)
    started = time.perf_counter()
    builder = IndexBuilder(thresholds={signal: radius})
    builder.add_codes(signal, "bench", codes, np.arange(n))
    built = builder.build(f"{signal}-{n}")
    build_s = time.perf_counter() - started
    root = scratch / f"{signal}-{n}"
    built.save(root)
    del built, builder
    started = time.perf_counter()
    index = Index.load(root)
    load_s = time.perf_counter() - started

    targets = rng.integers(0, n, QUERIES)
    distances = rng.integers(0, radius + 1, QUERIES)
    planted = [near(rng, codes[t], int(d)) for t, d in zip(targets, distances, strict=True)]
    randoms = [rng.bytes(width) for _ in range(QUERIES)]
    queries = [image(signal, c) for c in planted + randoms]
    for h in queries:  # warm-up: page the files in, as a running worker has them
        index.match(h)
    started = time.perf_counter()
    found = [index.match(h) for h in queries]
    per_query = (time.perf_counter() - started) / len(queries)
    missing = sum(
        int(t) not in {m.entry_pk for m in ms}
        for t, ms in zip(targets, found[:QUERIES], strict=True)
    )
    started = time.perf_counter()
    for page in range(0, len(queries), 50):
        index.match_many(queries[page : page + 50])
    per_image_in_page = (time.perf_counter() - started) / len(queries)

    words = np.ascontiguousarray(codes.view(">u8").astype(np.uint64).T)
    probes = [np.frombuffer(c, ">u8").astype(np.uint64) for c in (planted + randoms)[:40]]
    started = time.perf_counter()
    for q in probes:
        distance = np.zeros(n, dtype=np.uint16)
        for word, value in zip(words, q, strict=True):
            distance += np.bitwise_count(word ^ value)
        np.flatnonzero(distance <= radius)
    brute = (time.perf_counter() - started) / len(probes)
    del words

    del index
    # Two worker processes hold the index at once: PSS splits the pages they share.
    search = [f"{root}/{signal}.codes", f"{root}/{signal}.mih"]
    measured = memory_of_processes(_load_and_query, (str(root), queries), [*search, str(root)])
    rss, pss = (sum(m[i][k] for m in measured for i in (0, 1)) for k in (0, 1))
    all_pss = sum(m[2][1] for m in measured)
    on_disk = sum(f.stat().st_size for f in root.iterdir())
    shutil.rmtree(root)
    return {
        "build_s": build_s,
        "load_s": load_s,
        "ms": per_query * 1e3,
        "page_ms": per_image_in_page * 1e3,
        "brute_ms": brute * 1e3,
        "missing": missing,
        "raw": n * width,
        "on_disk": on_disk,
        "rss": rss,
        "pss": pss,
        "all_pss": all_pss,
    }


def main() -> None:
    scratch = Path(tempfile.mkdtemp(prefix="bench-matching-"))
    print(
        f"{'entries':>12} {'build s':>8} {'load s':>7} {'ms/query':>9} {'q/s':>7} "
        f"{'in page':>8} {'numpy ms':>9} {'raw MB':>7} {'files MB':>9} "
        f"{'2×RSS MB':>9} {'2×PSS MB':>9} {'all files 2×PSS':>16}"
    )
    try:
        for signal, radius, width in CASES:
            for n in SIZES:
                r = run(signal, radius, width, n, scratch)
                mb = 1e6
                print(
                    f"{n:>10,} {signal:<5} {r['build_s']:6.1f} {r['load_s']:7.3f} "
                    f"{r['ms']:9.2f} {1e3 / r['ms']:7.0f} {r['page_ms']:8.2f} "
                    f"{r['brute_ms']:9.1f} {r['raw'] / mb:7.0f} {r['on_disk'] / mb:9.0f} "
                    f"{r['rss'] / mb:9.0f} {r['pss'] / mb:9.0f} {r['all_pss'] / mb:16.0f}"
                    + (f"  {r['missing']} planted neighbours NOT FOUND" if r["missing"] else ""),
                    flush=True,
                )
                if signal == "phash" and n == 10_000_000:
                    report_targets(r)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def report_targets(r: dict[str, float]) -> None:
    checks = [
        ("ms per query", r["ms"], 5.0, "ms"),
        ("load", r["load_s"], 2.0, "s"),
        ("two workers' search arrays (PSS) / raw codes", r["pss"] / r["raw"], 2.0, "x"),
    ]
    for what, value, limit, unit in checks:
        verdict = "met" if value <= limit else f"MISSED by {value / limit - 1:.0%}"
        print(f"  10M pHash {what}: {value:.2f} {unit}, target ≤ {limit:g}: {verdict}")
    print(
        f"  (RSS counts the shared pages in each process: {r['rss'] / r['raw']:.1f}x raw. With "
        f"the entry metadata the hits paged in, all files: {r['all_pss'] / r['raw']:.1f}x raw "
        f"PSS. The numpy scan baseline took {r['brute_ms']:.1f} ms per query.)"
    )


if __name__ == "__main__":
    main()
