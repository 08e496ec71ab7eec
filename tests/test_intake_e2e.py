"""Intake end to end, through the real command line: list → submit → worker → report,
and the same page through ``hotline scan --json``.

The page shows re-encoded and resized copies of two listed photographs next to
photographs that are not listed; only the copies may match.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import ImageOps

from .conftest import Site, encode, photo, run_hotline

pytestmark = pytest.mark.browser

LISTED = ("astronaut", "coffee")


def _gallery(site: Site) -> None:
    astro, coffee = photo("astronaut"), photo("coffee")
    site.routes.update(
        {
            # Listed photographs, changed the way re-posts change them.
            "/img/a-small.jpg": ("image/jpeg", encode(astro.resize((256, 256)), quality=60)),
            "/img/c-recoded.jpg": ("image/jpeg", encode(coffee, quality=50)),
            # Wrong Content-Type on purpose: the scanner sniffs the bytes.
            "/img/c-png": ("application/octet-stream", encode(coffee.resize((300, 200)), "PNG")),
            # Photographs nobody listed.
            "/img/cat.jpg": ("image/jpeg", encode(photo("chelsea"))),
            "/img/rocket.png": ("image/png", encode(photo("rocket").resize((213, 160)), "PNG")),
            "/img/pixel.gif": (
                "image/gif",
                encode(ImageOps.grayscale(astro).resize((1, 1)), "GIF"),
            ),
            "/gallery": (
                "text/html",
                b"""<!doctype html><title>gallery</title>
                <img src="/img/a-small.jpg"><img src="/img/cat.jpg">
                <div style="height:3000px"></div>
                <img loading="lazy" src="/img/c-recoded.jpg">
                <div style="background-image:url('/img/c-png');width:50px;height:50px"></div>
                <picture><source srcset="/img/rocket.png"><img src="/img/none.jpg"></picture>
                <img src="/img/pixel.gif">""",
            ),
        }
    )


def _list_originals(tmp_path: Path, env: dict[str, str]) -> None:
    originals = tmp_path / "originals"
    originals.mkdir()
    for name in LISTED:
        (originals / f"{name}.png").write_bytes(encode(photo(name), "PNG"))
    r = run_hotline(
        "lists", "add-images", "known-test", str(originals), "--category", "A1", env=env
    )
    assert r.returncode == 0, r.stderr
    assert "2 images hashed" in r.stdout


def _check_gallery_scan(doc: dict, site: Site) -> None:
    assert doc["status"] == "completed", doc["error"]
    assert doc["error"] is None
    assert doc["http_status"] == 200
    assert doc["final_url"] == site.url("/gallery")
    assert doc["server_ip"] == "127.0.0.1"
    by_url = {img["url"].rsplit("/", 1)[-1]: img for img in doc["images"]}
    assert set(by_url) == {"a-small.jpg", "c-recoded.jpg", "c-png", "cat.jpg", "rocket.png"}
    assert doc["meta"]["tiny_images"] == 1  # the tracking pixel is counted, not kept
    for name in ("a-small.jpg", "c-recoded.jpg", "c-png"):
        matches = by_url[name]["matches"]
        assert matches, f"{name} should match a listed photograph"
        perceptual = [m for m in matches if m["signal_type"] in ("phash", "pdq")]
        assert perceptual and all(m["distance"] <= m["threshold"] for m in perceptual)
        assert {m["list"] for m in matches} == {"known-test"}
        assert {m["category"] for m in matches} == {"A1"}
    for name in ("cat.jpg", "rocket.png"):
        assert by_url[name]["matches"] == [], f"{name} is not listed"
    for img in doc["images"]:
        assert len(img["sha256"]) == 64 and len(img["md5"]) == 32
        assert img["width"] and img["height"] and img["bytes"] > 0
    assert doc["matched"] is True


def test_submit_worker_report(site: Site, tmp_path: Path, hotline_env, redis_url) -> None:
    env = {**hotline_env, "HOTLINE_REDIS_URL": redis_url}
    _gallery(site)
    _list_originals(tmp_path, env)

    r = run_hotline("submit", site.url("/gallery"), "--source", "test-form", "--json", env=env)
    assert r.returncode == 0, r.stderr
    report_id = json.loads(r.stdout)["report_id"]

    r = run_hotline("worker", "--burst", env=env, timeout=180)
    assert r.returncode == 0, r.stderr

    r = run_hotline("report", str(report_id), "--json", env=env)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["state"] == "done"
    assert report["source"] == "test-form"
    assert len(report["scans"]) == 1
    _check_gallery_scan(report["scans"][0], site)


def test_scan_json(site: Site, tmp_path: Path, hotline_env) -> None:
    _gallery(site)
    _list_originals(tmp_path, hotline_env)
    r = run_hotline("scan", site.url("/gallery"), "--json", env=hotline_env)
    assert r.returncode == 0, r.stderr
    _check_gallery_scan(json.loads(r.stdout), site)


def test_direct_image_url_needs_no_browser(site: Site, tmp_path: Path, hotline_env) -> None:
    _gallery(site)
    _list_originals(tmp_path, hotline_env)
    r = run_hotline("scan", site.url("/img/c-recoded.jpg"), "--json", env=hotline_env)
    doc = json.loads(r.stdout)
    assert doc["meta"]["stage"] == "http"
    assert [img["url"] for img in doc["images"]] == [site.url("/img/c-recoded.jpg")]
    assert doc["matched"] is True
