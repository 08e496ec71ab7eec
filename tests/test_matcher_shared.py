"""The index published on disk: built once per version, mapped by every process, swapped
atomically while others query it."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from rq import Worker

from hotline.config import Settings
from matcher import Entry, ImageHashes, Index, IndexBuilder, SharedIndex
from store import Store
from workers import connect, enqueue_scan, run_worker

from .helpers import memory_of_processes

PHASHES = [f"{(i * 0x9E3779B97F4A7C15) % 2**64:016x}" for i in range(1, 41)]


def image(phash: str) -> ImageHashes:
    return ImageHashes(md5="0" * 32, sha1="0" * 40, sha256="0" * 64, phash=phash)


def version_index(version: int) -> Index:
    """Version k lists every phash under refs "k-…"; a query sees one version, whole."""
    index = Index.build(
        Entry(i, f"{version}-{i}", "known", "phash", h, None) for i, h in enumerate(PHASHES)
    )
    index.version = f"v{version}"
    return index


def test_built_once_then_mapped(tmp_path: Path) -> None:
    builds = []

    def build() -> Index:
        builds.append(1)
        return version_index(1)

    shared = SharedIndex(tmp_path)
    first = shared.get("v1", build)
    assert shared.get("v1", build) is first  # this process keeps it
    other = SharedIndex(tmp_path).get("v1", build)  # another process maps it
    assert len(builds) == 1
    assert isinstance(other._tables["phash"].codes, np.memmap)
    assert [m.entry_id for m in other.match(image(PHASHES[3]))] == ["1-3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "v1"]
    with pytest.raises(ValueError, match="bad index version"):
        shared.get("../etc", build)


def test_an_index_of_another_format_is_rebuilt(tmp_path: Path) -> None:
    stale = tmp_path / "v1"
    version_index(1).save(stale)
    (stale / "manifest.json").write_text('{"format": 0}')  # left by an older release
    with pytest.raises(ValueError, match="index format 0"):
        Index.load(stale)
    index = SharedIndex(tmp_path).get("v1", lambda: version_index(1))
    assert [m.entry_id for m in index.match(image(PHASHES[0]))] == ["1-0"]
    assert Index.load(stale).version == "v1"


def test_builder_may_publish_a_newer_version(tmp_path: Path) -> None:
    """The build reads the store after the version was asked for: it labels what it read."""
    shared = SharedIndex(tmp_path)
    assert shared.get("v1", lambda: version_index(2)).version == "v2"
    assert shared.versions() == ["v2"]


def test_old_versions_are_collected(tmp_path: Path) -> None:
    shared = SharedIndex(tmp_path, keep=2)
    kept = shared.get("v1", lambda: version_index(1))
    (tmp_path / ".tmp-v9-12345").mkdir()  # left by a build that was killed
    for version in (2, 3):
        time.sleep(0.01)
        shared.get(f"v{version}", lambda v=version: version_index(v))
    assert shared.versions() == ["v3", "v2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "v2", "v3"]
    # A process that still maps the removed version keeps using it.
    assert [m.entry_id for m in kept.match(image(PHASHES[0]))] == ["1-0"]


def _build_slowly(root: str, calls: str) -> None:
    def build() -> Index:
        with open(calls, "a") as f:
            f.write("built\n")
        time.sleep(0.5)
        return version_index(1)

    SharedIndex(Path(root)).get("v1", build)


def test_two_processes_build_a_version_once(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    fork = multiprocessing.get_context("fork")
    procs = [
        fork.Process(target=_build_slowly, args=(str(tmp_path / "index"), str(calls)))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0]
    assert calls.read_text() == "built\n"


def test_index_swap_under_concurrent_queries(tmp_path: Path) -> None:
    """Threads query "the current version" nonstop while new versions are published and
    old ones removed: every answer comes whole from one version, and nothing fails."""
    shared_state = {"version": 1}
    errors: list[BaseException] = []
    seen: set[str] = set()
    stop = threading.Event()

    def query() -> None:
        shared = SharedIndex(tmp_path, keep=2)  # each thread plays one worker process
        try:
            while not stop.is_set():
                v = shared_state["version"]
                index = shared.get(f"v{v}", lambda v=v: version_index(v))
                found = index.match_many([image(h) for h in PHASHES])
                refs = {m.entry_id.split("-")[0] for ms in found for m in ms}
                assert len(refs) == 1 and all(len(ms) == 1 for ms in found), refs
                seen.update(refs)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=query) for _ in range(3)]
    for t in threads:
        t.start()
    for version in range(2, 12):
        time.sleep(0.05)
        SharedIndex(tmp_path, keep=2).get(f"v{version}", lambda v=version: version_index(v))
        shared_state["version"] = version
    time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(seen) > 3  # the readers did move from version to version
    assert len(SharedIndex(tmp_path).versions()) == 2


def _load_and_scan(root: str) -> Index:
    """Map the index and touch every code with queries (a scan reads them all)."""
    index = Index.load(Path(root))
    rng = np.random.default_rng(5)  # the same queries in every process
    index.match_many([image(f"{int(c):016x}") for c in rng.integers(0, 2**63, 4)])
    return index


def test_two_processes_share_one_copy(tmp_path: Path) -> None:
    n = 2_000_000
    builder = IndexBuilder()
    codes = np.random.default_rng(3).integers(0, 256, (n, 8), dtype=np.uint8)
    builder.add_codes("phash", "big", codes, np.arange(n))
    builder.build("big").save(tmp_path / "big")
    raw = n * 8
    root = str(tmp_path / "big")
    # Only the codes file is measured: a hit maps pages of the entry arrays too, and where
    # the page cache uses large folios one touched page maps megabytes of them.
    codes_file = str(tmp_path / "big" / "phash.codes.npy")
    measured = [m[0] for m in memory_of_processes(_load_and_scan, (root,), [codes_file])]
    # Each process has the codes resident (a scan reads them all) ...
    assert all(raw <= rss < 1.5 * raw for rss, _ in measured), measured
    # ... but it is one copy: their proportional shares add up to it, not to twice it.
    assert sum(pss for _, pss in measured) < 1.3 * raw, measured


def test_worker_builds_the_index_before_it_forks_a_job(
    hotline_env, redis_url, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A list change's index is built by the worker, outside any job's time limit: by the
    time a job is handed to a work horse, the current version is on disk."""
    monkeypatch.setenv("HOTLINE_REDIS_URL", redis_url)
    settings = Settings.from_env()
    store = Store(settings.database_url)
    store.migrate()
    store.create_list("known-a1", category="A1")
    store.add_entries("known-a1", [("phash", PHASHES[0], "ref-1", None)])
    enqueue_scan(connect(settings), settings, store.add_report("http://127.0.0.1:9/", "test"))
    on_disk_at_fork: list[list[str]] = []
    monkeypatch.setattr(
        Worker,
        "execute_job",
        lambda _worker, _job, _queue: on_disk_at_fork.append(
            SharedIndex(settings.home / "index").versions()
        ),
    )
    run_worker(settings, burst=True)
    assert on_disk_at_fork == [[store.lists_version()]]
