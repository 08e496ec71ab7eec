"""Every image a visitor could see is hashed, in every way a page can show one, and the
limits hold without crashing the scan."""

from __future__ import annotations

import asyncio
import base64
import io
import time

import pytest
from PIL import Image

from hotline import intake
from hotline.config import Settings
from matcher import Index
from scanner import sniff_image

from .conftest import Site, encode, photo

pytestmark = pytest.mark.browser


def _scan(url: str) -> dict:
    return asyncio.run(intake.scan(url, Settings.from_env(), Index.build([])))


def _names(doc: dict) -> set[str]:
    return {i["url"].rsplit("/", 1)[-1] for i in doc["images"] if not i["url"].startswith("data:")}


def _img(n: int, size: tuple[int, int] = (120, 90)) -> bytes:
    """Distinct, decodable pictures: crops of one photograph."""
    return encode(photo("astronaut").crop((n * 7, n * 5, n * 7 + 300, n * 5 + 220)).resize(size))


@pytest.fixture
def other_origin():
    s = Site().start()
    yield s
    s.stop()


def test_every_way_a_page_shows_an_image(site: Site, other_origin: Site, hotline_env) -> None:
    other_origin.routes.update(
        {
            "/x-frame": ("text/html", b'<img src="/x.jpg"><iframe src="/x-inner"></iframe>'),
            "/x-inner": (
                "text/html",
                b'<div style="background:url(/x-bg.jpg);width:9px;height:9px">',
            ),
            "/x.jpg": ("image/jpeg", _img(1)),
            "/x-bg.jpg": ("image/jpeg", _img(2)),
        }
    )
    data_uri = (
        "data:image/png;base64,"
        + base64.b64encode(encode(photo("coffee").resize((64, 40)), "PNG")).decode()
    )
    site.routes.update(
        {
            **{f"/{n}.jpg": ("image/jpeg", _img(n)) for n in range(3, 16)},
            "/style.css": ("text/css", b".hero { background-image: url(/5.jpg); height: 20px }"),
            "/blob-src.jpg": ("image/jpeg", _img(16)),
            "/": (
                "text/html",
                f"""<!doctype html><link rel="stylesheet" href="/style.css">
<div class="hero"></div>
<img src="/3.jpg" srcset="/3.jpg 1x, /4.jpg 2x">
<picture><source srcset="/6.jpg" media="(max-width: 10px)"><img src="/7.jpg"></picture>
<div style="background-image:url('/8.jpg');width:9px;height:9px"></div>
<video poster="/9.jpg"></video>
<svg width="20" height="20"><image href="/10.jpg" width="20" height="20"/></svg>
<img src="{data_uri}">
<iframe src="{other_origin.url("/x-frame")}"></iframe>
<div style="height:4000px"></div>
<img loading="lazy" src="/11.jpg">
<img id="late">
<script>
  window.addEventListener("load", () => setTimeout(() => {{
    document.getElementById("late").src = "/12.jpg";
    fetch("/blob-src.jpg").then(r => r.blob()).then(b => {{
      const i = document.createElement("img"); i.src = URL.createObjectURL(b);
      document.body.appendChild(i);
    }});
  }}, 300));
</script>""".encode(),
            ),
        }
    )
    doc = _scan(site.url("/"))
    assert doc["status"] == "completed", doc["error"]
    names = _names(doc)
    expected = {f"{n}.jpg" for n in range(3, 13)} | {"x.jpg", "x-bg.jpg", "blob-src.jpg"}
    assert expected <= names, expected - names
    urls = [i["url"] for i in doc["images"]]
    assert any(u.startswith("data:image/png;base64,") and u.endswith("…") for u in urls)
    # The blob: URL holds the same bytes as the fetched image: both hashed, same sha256.
    blob = [i for i in doc["images"] if i["url"].startswith("blob:")]
    assert blob and blob[0]["sha256"] == next(
        i["sha256"] for i in doc["images"] if i["url"].endswith("/blob-src.jpg")
    )


def test_formats_and_wrong_content_types(site: Site, hotline_env) -> None:
    img = photo("chelsea").resize((160, 120))
    formats = {
        "JPEG": "jpg",
        "PNG": "png",
        "GIF": "gif",
        "WEBP": "webp",
        "AVIF": "avif",
        "BMP": "bmp",
        "TIFF": "tiff",
        "ICO": "ico",
    }
    tags = []
    for fmt, ext in formats.items():
        data = encode(img, fmt)
        assert sniff_image(data[:16]), fmt
        # Lies about the type on purpose; the scanner sniffs the bytes.
        site.routes[f"/f.{ext}"] = ("text/plain" if fmt == "PNG" else "image/jpeg", data)
        tags.append(f'<img src="/f.{ext}">')
    site.routes["/"] = ("text/html", "".join(tags).encode())
    doc = _scan(site.url("/"))
    got = {i["url"].rsplit(".", 1)[-1]: i for i in doc["images"]}
    assert set(got) == set(formats.values())
    for ext, image in got.items():
        assert image["error"] is None and image["phash"], ext
        assert image["format"] and image["width"] == (64 if ext == "ico" else 160)


def test_client_side_redirects_are_followed_and_recorded(site: Site, hotline_env) -> None:
    site.routes.update(
        {
            "/meta": ("text/html", b'<meta http-equiv="refresh" content="0;url=/js">'),
            "/js": ("text/html", b'<script>location.replace("/end")</script>'),
            "/end": ("text/html", b'<img src="/e.jpg">'),
            "/e.jpg": ("image/jpeg", _img(3)),
        }
    )
    doc = _scan(site.url("/meta"))
    assert doc["status"] == "completed"
    assert doc["final_url"] == site.url("/end")
    assert doc["redirects"][0] == {"url": site.url("/meta"), "status": 200, "kind": "client"}
    assert _names(doc) == {"e.jpg"}


def test_limits_are_recorded_not_crashes(site: Site, hotline_env, monkeypatch) -> None:
    monkeypatch.setenv("HOTLINE_MAX_IMAGES", "3")
    monkeypatch.setenv("HOTLINE_MAX_PIXELS", "1000000")
    bomb = io.BytesIO()
    Image.new("L", (4000, 4000)).save(bomb, "PNG")  # 16 Mpx in a few KB
    site.routes.update(
        {
            **{f"/{n}.jpg": ("image/jpeg", _img(n)) for n in range(6)},
            "/bomb.png": ("image/png", bomb.getvalue()),
            "/": (
                "text/html",
                b'<img src="/bomb.png">'
                + b"".join(f'<img src="/{n}.jpg">'.encode() for n in range(6)),
            ),
        }
    )
    doc = _scan(site.url("/"))
    assert doc["status"] == "completed"
    assert len(doc["images"]) == 3
    reasons = [s["reason"] for s in doc["meta"]["skipped"]]
    assert reasons.count("max_images") == 4
    bombs = [i for i in doc["images"] if i["url"].endswith("bomb.png")]
    assert not bombs or bombs[0]["error"]["kind"] == "too_large"


def test_popups_dialogs_downloads_do_not_stall_or_write(site: Site, hotline_env) -> None:
    site.routes.update(
        {
            "/file.zip": ("application/zip", b"PK\x03\x04" + b"\x00" * 64),
            "/p.jpg": ("image/jpeg", _img(4)),
            "/": (
                "text/html",
                b"""<img src="/p.jpg"><a id="d" href="/file.zip" download>z</a>
<script>
  alert("hi"); confirm("sure?"); prompt("name?");
  window.open("/p.jpg"); window.open("about:blank");
  document.getElementById("d").click();
  window.onbeforeunload = () => "stay";
</script>""",
            ),
        }
    )
    t0 = time.monotonic()
    doc = _scan(site.url("/"))
    assert doc["status"] == "completed", doc["error"]
    assert _names(doc) == {"p.jpg"}
    assert time.monotonic() - t0 < 20
    home = Settings.from_env().home
    assert not [p for p in home.rglob("*") if p.name.endswith(".zip")]


def test_hard_wall_clock_kills_a_hung_page(site: Site, hotline_env, monkeypatch) -> None:
    monkeypatch.setenv("HOTLINE_SCAN_TIMEOUT", "6s")
    site.routes["/"] = ("text/html", b"<p>busy</p><script>onload = () => { for (;;) {} }</script>")
    t0 = time.monotonic()
    doc = _scan(site.url("/"))
    took = time.monotonic() - t0
    assert doc["error"]["kind"] == "timeout", doc["error"]
    assert took < 15, took
