"""Store tests; every one runs on SQLite and on PostgreSQL (skipped when that is not reachable)."""

import copy
import json
import multiprocessing
import os
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from store import ListNotFound, ReportNotFound, Store
from store.schema import images, list_entries, metadata

POSTGRES_URL = os.environ.get(
    "HOTLINE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MD5 = "9e107d9d372bb6826bd81d3542a419d6"
PDQ = "f" * 64


@pytest.fixture(scope="session")
def postgres() -> sa.Engine:
    """Engine on the test database, to make and drop a schema per test; skips when unreachable."""
    engine = sa.create_engine(
        POSTGRES_URL, poolclass=sa.NullPool, connect_args={"connect_timeout": 3}
    )
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        reason = f"PostgreSQL not reachable at {engine.url.render_as_string()}: {exc.orig}"
        print(reason)
        pytest.skip(reason)
    return engine


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL nobody else uses: a new SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/var/hotline.db"  # var/ does not exist yet: Store makes it
        return
    admin: sa.Engine = request.getfixturevalue("postgres")
    schema = f"t_{secrets.token_hex(6)}"
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        isolated = admin.url.update_query_dict({"options": f"-csearch_path={schema}"})
        yield isolated.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    store = Store(url)
    store.migrate()
    yield store
    store.close()


def scan_document(**changes) -> dict:
    """A completed scan without images, as the scanner hands it over."""
    started = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    return {
        "url": "http://example.test/a",
        "final_url": "https://example.test/b",
        "status": "completed",
        "error": None,
        "http_status": 200,
        "redirects": [{"url": "http://example.test/a", "status": 301}],
        "server_ip": "192.0.2.7",
        "started_at": started.isoformat(),
        "finished_at": (started + timedelta(seconds=3)).isoformat(),
        "matched": False,
        "blocked": [{"url": "http://tracker.test/x.js", "reason": "third-party script"}],
        "meta": {"user_agent": "hotline-scanner/0.1", "timings": {"load": 1.5}, "counts": {}},
        "images": [],
        **changes,
    }


def image_document(url: str, md5: str | None = MD5, **changes) -> dict:
    return {
        "url": url,
        "md5": md5,
        "sha1": "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12",
        "sha256": "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592",
        "phash": "c3c3c3c3c3c3c3c3",
        "pdq": PDQ,
        "pdq_quality": 100,
        "width": 640,
        "height": 480,
        "bytes": 12345,
        "format": "JPEG",
        "dhash": "3c3c3c3c3c3c3c3c",
        "query_hashes": {"phash": ["c3c3c3c3c3c3c3c4"], "pdq": []},
        "error": None,
        "matches": [],
        "allowed": [],
        **changes,
    }


def match_document(entry: dict, distance: int) -> dict:
    """A match as the matcher builds it from an iter_entries() entry."""
    return {
        "list": entry["list"],
        "signal_type": entry["signal_type"],
        "entry_id": entry["ref"] or str(entry["pk"]),
        "entry_pk": entry["pk"],
        "category": entry["category"],
        "distance": distance,
        "threshold": 31 if entry["signal_type"] == "pdq" else 0,
        "retro": False,
    }


def stored_scans(store: Store, report_id: int) -> list[dict]:
    """The report's scans without their ids, comparable to what was saved."""
    report = store.get_report(report_id)
    json.dumps(report)  # the API serves it as is
    return [{key: value for key, value in scan.items() if key != "id"} for scan in report["scans"]]


def without_entry_pks(scan: dict) -> dict:
    scan = copy.deepcopy(scan)
    for image in scan["images"]:
        for match in image["matches"]:
            del match["entry_pk"]
    return scan


def test_migrations_are_idempotent_and_match_the_schema(store: Store) -> None:
    store.migrate()
    store.ping()
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []


def migrate(url: str) -> None:
    Store(url).migrate()


def test_concurrent_start_ups_migrate_once(url: str) -> None:
    """Every command migrates at start-up, so processes starting together must not collide."""
    fork = multiprocessing.get_context("fork")
    processes = [fork.Process(target=migrate, args=(url,)) for _ in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    assert [process.exitcode for process in processes] == [0] * 4


def test_report_round_trip_and_states(store: Store) -> None:
    before = datetime.now(UTC)
    report_id = store.add_report("http://example.test/a", source="web form")
    other_id = store.add_report("http://example.test/b")

    report = store.get_report(report_id)
    assert before <= datetime.fromisoformat(report["received_at"]) <= datetime.now(UTC)
    assert report == {
        "id": report_id,
        "url": "http://example.test/a",
        "source": "web form",
        "received_at": report["received_at"],
        "state": "queued",
        "attempts": 0,
        "scans": [],
        "takedown": None,
    }
    assert store.reports_in_state("queued") == [report_id, other_id]

    store.set_report_state(report_id, "scanning", bump_attempts=True)
    store.set_report_state(report_id, "queued")
    store.set_report_state(report_id, "scanning", bump_attempts=True)
    assert store.get_report(report_id)["attempts"] == 2
    assert store.reports_in_state("scanning") == [report_id]
    assert store.reports_in_state("scanning", "queued") == [report_id, other_id]
    in_a_minute = datetime.now(UTC) + timedelta(minutes=1)
    assert store.reports_in_state("scanning", older_than=in_a_minute) == [report_id]
    assert store.reports_in_state("scanning", older_than=before) == []

    with pytest.raises(ValueError, match="report state"):
        store.set_report_state(report_id, "lost")
    with pytest.raises(sa.exc.StatementError, match="naive datetime"):
        store.reports_in_state("queued", older_than=datetime.now())


def test_unknown_report(store: Store) -> None:
    with pytest.raises(ReportNotFound):
        store.get_report(404)
    with pytest.raises(ReportNotFound):
        store.set_report_state(404, "done")
    with pytest.raises(ReportNotFound):
        store.save_scan(404, scan_document())


def test_scan_document_round_trip(store: Store) -> None:
    store.create_list("known-a", category="A1")
    store.add_entries("known-a", [("md5", MD5, "IWF-1", None), ("pdq", PDQ, None, "B2")])
    md5_entry, pdq_entry = store.iter_entries()
    report_id = store.add_report("http://example.test/a")
    scan = scan_document(
        matched=True,
        images=[
            image_document(
                "http://example.test/1.jpg",
                matches=[match_document(md5_entry, 0), match_document(pdq_entry, 12)],
            ),
            image_document("http://example.test/2.png", md5="0" * 32, format="PNG"),
            image_document(
                "http://example.test/3.gif",
                **dict.fromkeys(["sha1", "sha256", "phash", "pdq", "pdq_quality", "format"]),
                **dict.fromkeys(["dhash", "query_hashes"]),
                **dict.fromkeys(["md5", "width", "height", "bytes"]),
                error={"kind": "too_large", "message": "over 20 MB"},
            ),
        ],
    )

    store.save_scan(report_id, scan)

    [stored] = stored_scans(store, report_id)
    assert stored == without_entry_pks(scan)
    assert [match["entry_id"] for match in stored["images"][0]["matches"]] == [
        "IWF-1",
        str(pdq_entry["pk"]),
    ]
    assert [match["category"] for match in stored["images"][0]["matches"]] == ["A1", "B2"]


def test_failed_scan_keeps_its_error_and_comes_last(store: Store) -> None:
    report_id = store.add_report("http://gone.test/")
    first = scan_document()
    failed = scan_document(
        status="failed",
        final_url=None,
        http_status=None,
        redirects=[],
        server_ip=None,
        blocked=[],
        error={"kind": "dns", "message": "NXDOMAIN gone.test"},
    )

    first_id = store.save_scan(report_id, first)
    failed_id = store.save_scan(report_id, failed)

    assert failed_id > first_id
    assert stored_scans(store, report_id) == [first, failed]


def test_scan_is_saved_whole_or_not_at_all(store: Store) -> None:
    report_id = store.add_report("http://example.test/a")
    bad_match = {"list": "x", "signal_type": "md5", "entry_id": "1", "entry_pk": 999}
    scan = scan_document(images=[image_document("http://example.test/1.jpg", matches=[bad_match])])

    with pytest.raises(ValueError, match="unknown list entries"):
        store.save_scan(report_id, scan)
    assert stored_scans(store, report_id) == []


def test_foreign_keys_are_enforced(store: Store) -> None:
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
        conn.execute(images.insert().values(scan_id=12345, url="http://example.test/1.jpg"))


def test_create_list_gets_or_creates(store: Store) -> None:
    list_id = store.create_list("iwf", category="A1")
    assert store.create_list("iwf", kind="allow") == list_id
    allow_id = store.create_list("ours", kind="allow")
    assert allow_id != list_id
    with pytest.raises(ValueError, match="list kind"):
        store.create_list("other", kind="maybe")

    empty = {"version": 0, "thresholds": {}, "entries": {}, "total": 0}
    assert store.lists() == [
        {"name": "iwf", "category": "A1", "kind": "known", **empty},
        {"name": "ours", "category": None, "kind": "allow", **empty},
    ]


def test_add_entries_counts_added_and_duplicates(store: Store) -> None:
    with pytest.raises(ListNotFound):
        store.add_entries("missing", [("md5", MD5, None, None)])
    store.create_list("iwf")
    empty = store.lists_version()
    entries = [
        ("md5", MD5, "r1", None),
        ("md5", MD5, "r1", None),  # duplicate within a batch
        ("md5", "0" * 32, None, None),
        ("pdq", MD5, None, None),  # same hash, other signal type: not a duplicate
        ("md5", MD5, "r2", None),  # duplicate across batches
    ]

    assert store.add_entries("iwf", entries, batch=2) == (3, 2)
    after_add = store.lists_version()
    assert store.add_entries("iwf", entries[:2]) == (0, 2)

    assert store.lists_version() == after_add != empty
    assert store.lists()[0]["version"] == 1
    assert store.add_entries("iwf", [("pdq", PDQ, None, None)]) == (1, 0)
    assert store.lists_version() != after_add
    store.create_list("new")
    assert len({empty, after_add, store.lists_version()}) == 3


def test_lists_and_entries(store: Store) -> None:
    store.create_list("iwf", category="A1")
    store.create_list("ours", kind="allow")
    disabled = "0" * 32
    store.add_entries(
        "iwf",
        [("md5", MD5, "IWF-1", None), ("md5", disabled, None, "B2"), ("pdq", PDQ, None, None)],
    )
    store.add_entries("ours", [("md5", MD5, None, None)])
    with store.engine.begin() as conn:
        conn.execute(
            list_entries.update().where(list_entries.c.hash == disabled).values(enabled=False)
        )

    assert [(info["name"], info["entries"], info["total"]) for info in store.lists()] == [
        ("iwf", {"md5": 1, "pdq": 1}, 2),
        ("ours", {"md5": 1}, 1),
    ]
    entries = store.iter_entries()
    assert isinstance(entries, Iterator)
    assert [{key: entry[key] for key in entry if key != "pk"} for entry in entries] == [
        {"ref": "IWF-1", "list": "iwf", "kind": "known", "signal_type": "md5", "hash": MD5,
         "category": "A1"},
        {"ref": None, "list": "iwf", "kind": "known", "signal_type": "pdq", "hash": PDQ,
         "category": "A1"},
        {"ref": None, "list": "ours", "kind": "allow", "signal_type": "md5", "hash": MD5,
         "category": None},
    ]  # fmt: skip


def test_100k_entries_load_fast(store: Store) -> None:
    store.create_list("big")
    entries = (("pdq", f"{number:064x}", f"ref-{number}", None) for number in range(100_000))

    started = time.perf_counter()
    assert store.add_entries("big", entries) == (100_000, 0)
    elapsed = time.perf_counter() - started

    dialect = store.engine.dialect.name
    print(f"{dialect}: {100_000 / elapsed:,.0f} entries/s")
    assert elapsed < {"sqlite": 5, "postgresql": 10}[dialect]
    assert sum(1 for _ in store.iter_entries()) == 100_000


def test_only_reachable_durable_supported_databases() -> None:
    with pytest.raises(ValueError, match="database file"):
        Store("sqlite://")
    with pytest.raises(ValueError, match="unsupported database"):
        Store("mysql://localhost/hotline")
    with pytest.raises(sa.exc.OperationalError):
        Store("postgresql+psycopg://postgres@127.0.0.1:1/test").ping()
