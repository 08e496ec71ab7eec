"""Analyst queries over 1M stored images in 100k reports, on SQLite and PostgreSQL.

Seeded by bulk insert (no scans run): 100k reports on 5,000 skewed domains, one scan each
(a fifth redirected to another domain), ten images per scan drawn from 300k distinct
images, a tenth of them re-encoded copies (new exact hashes, perceptual hashes a few bits
off), 1% matched against a 10k-entry list.

Measured through the Store methods the API calls: p50/p95 of domain search (first page
with total), exact-hash pivots (md5, sha256), near-hash pivots (phash at distance 10, PDQ
at 10 and 31), server-IP and URL-substring search. Targets: p95 ≤ 100 ms for domain
search and exact pivots, ≤ 300 ms for near pivots at distance 10.

Baseline, same run and data: the same queries without the indexes they use (dropped
afterwards), and near pivots as a Hamming full scan inside the database (PostgreSQL
bit_count, a SQLite function) instead of the in-memory index.

BENCH_QUERIES_IMAGES scales the data (default 1,000,000); BENCH_QUERIES_DB=sqlite or
postgres runs one backend; HOTLINE_TEST_POSTGRES_URL names the PostgreSQL database.
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa

from store import Store
from store.schema import metadata
from store.search import Near, SearchFilters, url_host_keys

IMAGES = int(os.environ.get("BENCH_QUERIES_IMAGES", "1000000"))
PER_SCAN = 10
REPORTS = IMAGES // PER_SCAN
DISTINCT = max(IMAGES * 3 // 10, 1)
DOMAINS = 5000
ENTRIES = 10_000
RUNS, BASELINE_RUNS = 40, 5
CHUNK = 100_000
T0 = datetime(2025, 1, 1, tzinfo=UTC)
POSTGRES_URL = os.environ.get(
    "HOTLINE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
# What the baseline goes without: every index the measured queries can use.
BASELINE_DROPS = (
    "ix_report_hosts_host_key_report_id",
    "ix_scans_server_ip",
    "ix_reports_received_at",
    "ix_images_md5",
    "ix_images_sha256",
    "ix_images_phash",
    "ix_images_pdq",
)
TARGETS = {"domain": 100, "md5 pivot": 100, "sha256 pivot": 100, "phash~10": 300, "pdq~10": 300}


class Data:
    """The synthetic corpus, generated once from a fixed seed and loaded into each backend."""

    def __init__(self) -> None:
        rng = np.random.default_rng(6)
        self.identity = {
            "md5": rng.bytes(16 * DISTINCT),
            "sha1": rng.bytes(20 * DISTINCT),
            "sha256": rng.bytes(32 * DISTINCT),
        }
        self.phash = rng.integers(0, 2**63, DISTINCT, dtype=np.uint64) * np.uint64(2)
        self.pdq = rng.integers(0, 256, (DISTINCT, 32), dtype=np.uint8)
        self.domain_of = (DOMAINS * rng.random(REPORTS) ** 2).astype(np.int64)
        self.redirect_to = np.where(
            rng.random(REPORTS) < 0.2, rng.integers(0, DOMAINS, REPORTS), -1
        )
        self.image_of = rng.integers(0, DISTINCT, IMAGES)
        self.copy = rng.random(IMAGES) < 0.1
        self.matched = np.flatnonzero(rng.random(IMAGES) < 0.01)

    def hexes(self, kind: str, ids: np.ndarray) -> list[str]:
        width = {"md5": 16, "sha1": 20, "sha256": 32}[kind]
        blob = self.identity[kind]
        return [blob[i * width : (i + 1) * width].hex() for i in ids.tolist()]

    def report_rows(self) -> Iterator[tuple]:
        for n in range(REPORTS):
            yield (
                n + 1,
                f"http://www.d{self.domain_of[n]}.test/page/{n}",
                "bench",
                T0 + timedelta(minutes=5 * n),
                "done",
                1,
                T0 + timedelta(minutes=5 * n + 2),
            )

    def scan_rows(self) -> Iterator[tuple]:
        for n in range(REPORTS):
            url = f"http://www.d{self.domain_of[n]}.test/page/{n}"
            target = self.redirect_to[n]
            final = f"https://cdn.d{target}.test/g/{n}" if target >= 0 else url
            redirects = [{"url": url, "status": 302}] if target >= 0 else []
            started = T0 + timedelta(minutes=5 * n + 1)
            yield (
                n + 1, n + 1, url, final, "completed", 200, json.dumps(redirects),
                f"198.51.{n % 200}.{n % 251}", started, started + timedelta(seconds=3 + n % 20),
                False, "[]", "{}",
            )  # fmt: skip

    def host_rows(self) -> Iterator[tuple]:
        for report, scan in zip(self.report_rows(), self.scan_rows(), strict=True):
            for key in url_host_keys([report[1], scan[3]]):
                yield (report[0], key)

    def image_rows(self) -> Iterator[tuple]:
        for start in range(0, IMAGES, CHUNK):
            ids = np.arange(start, min(start + CHUNK, IMAGES))
            identity = self.image_of[ids]
            copy = self.copy[ids]
            phash = self.phash[identity].copy()
            pdq = self.pdq[identity].copy()
            rng = np.random.default_rng(start + 1)  # same corpus for every backend
            flips = rng.integers(0, 64, (len(ids), 3)).astype(np.uint64)
            masks = np.bitwise_or.reduce(np.uint64(1) << flips, axis=1)
            phash[copy] ^= masks[copy]
            pdq[copy, :3] ^= rng.integers(0, 256, (int(copy.sum()), 3), dtype=np.uint8)
            # A re-encoded copy has exact hashes of its own (from the unused tail of the pool).
            exact_ids = np.where(copy, (identity * 7 + 1) % DISTINCT, identity)
            md5s, sha1s, sha256s = (self.hexes(k, exact_ids) for k in ("md5", "sha1", "sha256"))
            for i, image_id in enumerate(ids.tolist()):
                scan = image_id // PER_SCAN + 1
                yield (
                    image_id + 1, scan, f"https://cdn.example.test/{scan}/{i}.jpg",
                    md5s[i], sha1s[i], sha256s[i], f"{int(phash[i]):016x}", pdq[i].tobytes().hex(),
                    100, 800, 600, 50_000, "JPEG",
                )  # fmt: skip

    def match_rows(self) -> Iterator[tuple]:
        for n, image in enumerate(self.matched.tolist()):
            yield (n + 1, image + 1, n % ENTRIES + 1, 1, "md5", 0, 0, False, T0)


COLUMNS = {
    "reports": "id, url, source, received_at, state, attempts, updated_at",
    "scans": "id, report_id, url, final_url, status, http_status, redirects, server_ip, "
    "started_at, finished_at, matched, blocked, meta",
    "report_hosts": "report_id, host_key",
    "images": "id, scan_id, url, md5, sha1, sha256, phash, pdq, pdq_quality, width, height, "
    "bytes, format",
    "matches": "id, image_id, entry_id, list_id, signal_type, distance, threshold, retro, "
    "matched_at",
}


def load(store: Store, data: Data) -> float:
    """Bulk-load the corpus (indexes dropped during the load, then built); seconds taken."""
    started = time.perf_counter()
    store.create_list("bench-known", category="A1")
    store.add_entries("bench-known", ((("md5", f"{n:032x}", None, None)) for n in range(ENTRIES)))
    sources = {
        "reports": data.report_rows,
        "scans": data.scan_rows,
        "report_hosts": data.host_rows,
        "images": data.image_rows,
        "matches": data.match_rows,
    }
    indexes = [ix for name in sources for ix in metadata.tables[name].indexes]
    with store.engine.begin() as conn:
        for index in indexes:
            index.drop(conn)
    raw = store.engine.raw_connection()
    try:
        for table, rows in sources.items():
            _insert(raw, store.engine.dialect.name, table, rows())
            print(f"  {table} loaded ({time.perf_counter() - started:.0f} s)", flush=True)
        raw.commit()
    finally:
        raw.close()
    with store.engine.begin() as conn:
        for index in indexes:
            index.create(conn)
        conn.execute(sa.text("ANALYZE"))
    return time.perf_counter() - started


def _insert(raw: Any, dialect: str, table: str, rows: Iterator[tuple]) -> None:
    """COPY into PostgreSQL, executemany into SQLite: the fastest bulk path of each."""
    columns = COLUMNS[table]
    cursor = raw.driver_connection.cursor()
    if dialect == "postgresql":
        with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join("?" * len(columns.split(",")))
    batch = []
    for row in rows:
        batch.append(tuple(_sqlite_value(v) for v in row))
        if len(batch) == CHUNK:
            cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", batch)
            batch = []
    if batch:
        cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", batch)


def _sqlite_value(value: object) -> object:
    """Datetimes as SQLAlchemy writes them to SQLite (naive UTC, microseconds)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def timed(query: Callable[[int], object], runs: int) -> tuple[float, float]:
    """(p50, p95) in ms of `runs` calls, each with its own parameter index."""
    took = []
    for n in range(runs):
        started = time.perf_counter()
        query(n)
        took.append((time.perf_counter() - started) * 1000)
    took.sort()
    return statistics.median(took), took[min(len(took) - 1, int(0.95 * len(took)))]


def queries(store: Store, data: Data) -> dict[str, Callable[[int], object]]:
    rng = np.random.default_rng(7)
    picks = rng.integers(0, IMAGES, 1000)
    identity = data.image_of[picks]
    md5s, sha256s = data.hexes("md5", identity), data.hexes("sha256", identity)
    phashes = [f"{int(h):016x}" for h in data.phash[identity]]
    pdqs = [row.tobytes().hex() for row in data.pdq[identity]]
    domains = [f"d{d}.test" for d in (DOMAINS * rng.random(1000) ** 2).astype(int)]
    return {
        "domain": lambda n: store.search_reports(SearchFilters(domain=domains[n])),
        "md5 pivot": lambda n: store.hash_sightings("md5", md5s[n]),
        "sha256 pivot": lambda n: store.hash_sightings("sha256", sha256s[n]),
        "phash~10": lambda n: store.hash_sightings("phash", phashes[n], distance=10),
        "pdq~10": lambda n: store.hash_sightings("pdq", pdqs[n], distance=10),
        "pdq~31": lambda n: store.hash_sightings("pdq", pdqs[n], distance=31),
        "server ip": lambda n: store.search_reports(
            SearchFilters(server_ip=f"198.51.{n % 200}.{n % 251}")
        ),
        "url substring": lambda n: store.search_reports(SearchFilters(url=f"/page/{n * 97}")),
        "near search": lambda n: store.search_reports(
            SearchFilters(near=Near("phash", phashes[n], 10))
        ),
    }


def database_hamming(store: Store, column: str, bits: int) -> Callable[[str, int], list]:
    """A near-hash query as a full scan inside the database (the baseline)."""
    if store.engine.dialect.name == "postgresql":
        sql = sa.text(
            f"SELECT id FROM images WHERE {column} IS NOT NULL AND "
            f"bit_count(('x' || {column})::bit({bits}) # ('x' || :q)::bit({bits})) <= :d"
        )

        def scan(q: str, d: int) -> list:
            with store.engine.connect() as conn:
                return conn.execute(sql, {"q": q, "d": d}).all()

        return scan
    raw = store.engine.raw_connection()
    raw.driver_connection.create_function(
        "hamming", 2, lambda a, b: (int(a, 16) ^ int(b, 16)).bit_count(), deterministic=True
    )
    sql = f"SELECT id FROM images WHERE {column} IS NOT NULL AND hamming({column}, ?) <= ?"
    return lambda q, d: raw.cursor().execute(sql, (q, d)).fetchall()


def measure(name: str, url: str, data: Data) -> None:
    store = Store(url)
    store.migrate()
    print(f"\n{name}: loading {IMAGES:,} images in {REPORTS:,} reports …", flush=True)
    print(f"  loaded and indexed in {load(store, data):.0f} s", flush=True)
    checks = queries(store, data)
    started = time.perf_counter()
    store.hash_sightings("phash", "0" * 16, distance=0)
    store.hash_sightings("pdq", "0" * 64, distance=0)
    print(f"  near-hash index built on first use in {time.perf_counter() - started:.1f} s")
    figures = {label: timed(query, RUNS) for label, query in checks.items()}

    with store.engine.begin() as conn:
        for index in BASELINE_DROPS:
            conn.execute(sa.text(f"DROP INDEX {index}"))
        conn.execute(sa.text("ANALYZE"))
    baseline = {
        label: timed(query, BASELINE_RUNS)
        for label, query in checks.items()
        if "~" not in label and label != "near search"
    }
    phash_scan = database_hamming(store, "phash", 64)
    pdq_scan = database_hamming(store, "pdq", 256)
    picks = np.random.default_rng(8).integers(0, DISTINCT, BASELINE_RUNS)
    for label, scan, values, d in (
        ("phash~10", phash_scan, [f"{int(h):016x}" for h in data.phash[picks]], 10),
        ("pdq~10", pdq_scan, [r.tobytes().hex() for r in data.pdq[picks]], 10),
        ("pdq~31", pdq_scan, [r.tobytes().hex() for r in data.pdq[picks]], 31),
    ):
        baseline[label] = timed(lambda n, s=scan, v=values, d=d: s(v[n], d), BASELINE_RUNS)

    print(f"  {'query':<15}{'p50 ms':>9}{'p95 ms':>9}   {'baseline p50/p95 ms':>21}  target p95")
    for label, (p50, p95) in figures.items():
        base = baseline.get(label)
        base_text = f"{base[0]:,.0f} / {base[1]:,.0f}" if base else "–"
        target = TARGETS.get(label)
        verdict = "" if target is None else f"≤ {target} {'ok' if p95 <= target else 'MISSED'}"
        print(f"  {label:<15}{p50:>9.1f}{p95:>9.1f}   {base_text:>21}  {verdict}")
    store.close()


def main() -> None:
    chosen = os.environ.get("BENCH_QUERIES_DB", "sqlite,postgres").split(",")
    print(f"generating {IMAGES:,} images …", flush=True)
    data = Data()
    if "sqlite" in chosen:
        with tempfile.TemporaryDirectory(prefix="bench-queries-") as tmp:
            measure("SQLite", f"sqlite:///{tmp}/hotline.db", data)
    if "postgres" in chosen:
        admin = sa.create_engine(POSTGRES_URL, poolclass=sa.NullPool)
        schema = f"bench_{secrets.token_hex(4)}"
        try:
            with admin.begin() as conn:
                conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
        except sa.exc.OperationalError as e:
            print(f"\nPostgreSQL skipped: {e.orig}")
            return
        try:
            isolated = admin.url.update_query_dict({"options": f"-csearch_path={schema}"})
            measure("PostgreSQL", isolated.render_as_string(hide_password=False), data)
        finally:
            with admin.begin() as conn:
                conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
