"""Retro-matching: stored image hashes against entries listed after the scan.

End to end through the real command line and an RQ worker: a page is scanned, then one of
its photographs is listed, the retro job runs, and the report shows the match flagged.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from rq import Queue

from hotline import intake
from hotline.config import Settings
from hotline.matching import catch_up, current_index, retro_match
from matcher import hash_image
from store import Store
from workers import RETRO, connect, enqueue_retro
from workers.sweeper import sweep_jobs

from .conftest import Site, encode, photo, run_hotline


def _folder(tmp_path: Path, name: str, *photos: str) -> str:
    folder = tmp_path / name
    folder.mkdir()
    for p in photos:
        (folder / f"{p}.png").write_bytes(encode(photo(p), "PNG"))
    return str(folder)


@pytest.mark.browser
def test_retro_match_end_to_end(site: Site, tmp_path: Path, hotline_env, redis_url) -> None:
    env = {**hotline_env, "HOTLINE_REDIS_URL": redis_url}
    site.routes.update(
        {
            "/img/astronaut.jpg": ("image/jpeg", encode(photo("astronaut"), quality=70)),
            "/img/coffee.jpg": ("image/jpeg", encode(photo("coffee").resize((300, 200)))),
            "/img/rocket.jpg": ("image/jpeg", encode(photo("rocket"), quality=60)),
            "/gallery": (
                "text/html",
                b'<img src="/img/astronaut.jpg"><img src="/img/coffee.jpg">'
                b'<img src="/img/rocket.jpg">',
            ),
        }
    )
    # Before the scan: coffee is known; rocket is known too, but also on an allow list.
    for args in (
        ("known-a", _folder(tmp_path, "a", "coffee", "rocket")),
        ("logos", _folder(tmp_path, "logos", "rocket"), "--kind", "allow"),
    ):
        r = run_hotline("lists", "add-images", *args, env=env)
        assert r.returncode == 0, r.stderr
    r = run_hotline("submit", site.url("/gallery"), "--json", env=env)
    report_id = json.loads(r.stdout)["report_id"]
    r = run_hotline("worker", "--burst", env=env, timeout=180)
    assert r.returncode == 0, r.stderr

    def images() -> dict[str, dict]:
        r = run_hotline("report", str(report_id), "--json", env=env)
        [scan] = json.loads(r.stdout)["scans"]
        return {img["url"].rsplit("/", 1)[-1]: img for img in scan["images"]} | {"": scan}

    seen = images()
    assert seen["coffee.jpg"]["matches"] and not seen["coffee.jpg"]["matches"][0]["retro"]
    assert seen["rocket.jpg"]["matches"] == []  # known, but allowed: suppressed ...
    assert {m["list"] for m in seen["rocket.jpg"]["allowed"]} == {"logos"}  # ... and why
    assert seen["astronaut.jpg"]["matches"] == seen["astronaut.jpg"]["allowed"] == []
    assert seen["astronaut.jpg"]["query_hashes"]["phash"]  # kept for retro-matching

    # A month later the astronaut is listed: its entries are retro-matched by a worker.
    r = run_hotline("lists", "add-images", "known-b", _folder(tmp_path, "b", "astronaut"), env=env)
    assert "retro-matching of the stored images queued" in r.stderr
    r = run_hotline("worker", "--burst", "--queues", "retro", env=env, timeout=120)
    assert r.returncode == 0, r.stderr

    now = images()
    found = now["astronaut.jpg"]["matches"]
    assert found and {(m["list"], m["retro"]) for m in found} == {("known-b", True)}
    assert {m["signal_type"] for m in found} >= {"phash", "pdq"}
    assert now["coffee.jpg"]["matches"] == seen["coffee.jpg"]["matches"]
    assert now[""]["matched"] is True
    r = run_hotline("report", str(report_id), env=env)
    assert "RETRO" in r.stdout and "known-b/phash astronaut.png" in r.stdout
    # Nothing is pending any more: running it again finds nothing new.
    r = run_hotline("lists", "retro", "known-b", env=env)
    assert r.stdout.strip().endswith("0 new entries against 0 stored images: 0 new matches")


def _entries(image: Image.Image) -> list[tuple[str, str, None, None]]:
    """List entries of a photograph, as `hotline lists add-images` makes them."""
    return [(t, v, None, None) for t, v in hash_image(encode(image, "PNG")).main_hashes().items()]


def _save_scan(store: Store, *images: tuple[str, bytes]) -> tuple[int, int]:
    report_id = store.add_report("http://example.test/page")
    docs = [intake._image_doc(url, hash_image(data), []) for url, data in images]
    scan = {
        "url": "http://example.test/page",
        "status": "completed",
        "started_at": "2026-01-01T00:00:00+00:00",
        "matched": False,
        "images": docs,
    }
    return report_id, store.save_scan(report_id, scan)


def _matches(store: Store, report_id: int) -> dict[str, list[tuple]]:
    [scan] = store.get_report(report_id)["scans"]
    return {
        img["url"]: sorted(
            (m["list"], m["signal_type"], m["retro"]) for m in img["matches"] + img["allowed"]
        )
        for img in scan["images"]
    } | {"matched": scan["matched"]}


@pytest.fixture
def stack(hotline_env) -> tuple[Settings, Store]:
    settings = Settings.from_env()
    store = Store(settings.database_url)
    store.migrate()
    return settings, store


def test_retro_uses_the_stored_query_hashes_and_allow_lists(stack) -> None:
    settings, store = stack
    coffee, rocket = photo("coffee"), photo("rocket")
    mirrored = coffee.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    report_id, _ = _save_scan(
        store, ("mirrored.jpg", encode(mirrored)), ("rocket.jpg", encode(rocket))
    )
    store.create_list("logos", kind="allow")
    store.add_entries("logos", _entries(rocket))
    store.finish_retro(e["pk"] for e in store.iter_entries())
    store.create_list("iwf")
    store.add_entries("iwf", [*_entries(coffee), *_entries(rocket)])

    summary = retro_match(settings, store, "iwf")
    assert (summary["entries"], summary["images"]) == (12, 2)
    found = _matches(store, report_id)
    # The mirrored copy is found through its stored mirrored hashes (not dHash: it is not
    # looked up mirrored); rocket is on the allow list, so its match is the allow one.
    assert found["mirrored.jpg"] == [("iwf", "pdq", True), ("iwf", "phash", True)]
    assert found["rocket.jpg"] == [("logos", t, True) for t in ("dhash", "pdq", "phash")]
    assert found["matched"] is True
    assert store.lists_pending_retro() == []
    assert retro_match(settings, store, "iwf")["matches"] == 0


def test_a_scan_catches_up_with_lists_changed_while_it_ran(stack) -> None:
    settings, store = stack
    store.create_list("iwf")
    used = current_index(settings, store)  # the index the scan matched with
    report_id, scan_id = _save_scan(store, ("coffee.jpg", encode(photo("coffee"))))
    assert catch_up(settings, store, scan_id, used) == 0  # nothing changed
    # Listed while the scan ran; its retro job may have run before the scan was saved.
    store.add_entries("iwf", [e for e in _entries(photo("coffee")) if e[0] in ("phash", "pdq")])
    store.finish_retro(e["pk"] for e in store.iter_entries())

    assert catch_up(settings, store, scan_id, used) == 2
    found = _matches(store, report_id)["coffee.jpg"]
    assert found == [("iwf", "pdq", True), ("iwf", "phash", True)]
    assert catch_up(settings, store, scan_id, used) == 0
    assert current_index(settings, store).version == store.lists_version()


def test_retro_jobs_are_queued_once_and_swept_back(stack, redis_url) -> None:
    settings, store = stack
    settings = settings.with_redis(redis_url)
    conn = connect(settings)
    queue = Queue(RETRO, connection=conn)
    first = enqueue_retro(conn, settings, "a list / any name")
    assert enqueue_retro(conn, settings, "a list / any name") == first  # it sees them all
    assert enqueue_retro(conn, settings, "other") != first
    assert queue.count == 2

    # Redis lost the jobs; entries still pending are queued again by the sweeper.
    queue.empty()
    store.create_list("iwf")
    store.add_entries("iwf", _entries(photo("coffee")))
    sweep_jobs(store, conn, settings)
    assert [job.args for job in queue.jobs] == [("iwf",)]
    sweep_jobs(store, conn, settings)
    assert queue.count == 1
