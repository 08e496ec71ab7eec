"""No media at rest, proved: images carry unique marker bytes, and after a normal scan
and after a scan killed midway no file in HOTLINE_HOME, the scan directories or the
temporary directories holds them. The browser runs sandboxed and leaves no process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from PIL import PngImagePlugin

from hotline.config import Settings
from scanner import scans_root

from .conftest import ROOT, Site, encode, photo, run_hotline
from .helpers import chromium_pids

pytestmark = pytest.mark.browser


def _marked_page(site: Site, marker: bytes, slow_image: bool = False) -> None:
    """A page whose images all carry ``marker``: a PNG text chunk and a JPEG comment."""
    info = PngImagePlugin.PngInfo()
    info.add_text("marker", marker.decode())
    png = encode(photo("coffee").resize((200, 130)), "PNG", pnginfo=info)
    jpeg = encode(photo("rocket"), comment=marker)
    assert marker in png and marker in jpeg

    async def slow(_request):
        from aiohttp import web

        await asyncio.sleep(30)
        return web.Response(body=jpeg, content_type="image/jpeg")

    site.routes.update(
        {
            "/m.png": ("image/png", png),
            "/m.jpg": ("image/jpeg", jpeg),
            "/slow.jpg": slow,
            "/page": (
                "text/html",
                b'<img src="/m.png"><img src="/m.jpg">'
                + (b'<img src="/slow.jpg">' if slow_image else b""),
            ),
        }
    )


def _places(home: Path) -> list[Path]:
    return [home, scans_root(home), Path(tempfile.gettempdir()), Path("/dev/shm")]


def _files_with(marker: bytes, roots: list[Path]) -> list[str]:
    found = []
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            for f in files:
                p = Path(dirpath, f)
                try:
                    if p.is_file() and marker in p.read_bytes():
                        found.append(str(p))
                except OSError:
                    continue
    return found


def test_normal_scan_leaves_no_media_and_no_process(site: Site, hotline_env) -> None:
    marker = uuid.uuid4().hex.encode()
    _marked_page(site, marker)
    before = chromium_pids()
    r = run_hotline("scan", site.url("/page"), "--json", env=hotline_env)
    doc = json.loads(r.stdout)
    assert doc["status"] == "completed" and len(doc["images"]) == 2
    assert marker not in (r.stdout + r.stderr).encode()
    home = Settings.from_env().home
    assert _files_with(marker, _places(home)) == []
    assert list(scans_root(home).glob("scan-*")) == []
    assert chromium_pids() - before == set()


def test_killed_scan_leaves_no_media_once_reclaimed(site: Site, hotline_env) -> None:
    marker = uuid.uuid4().hex.encode()
    _marked_page(site, marker, slow_image=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")} | hotline_env
    before = chromium_pids()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hotline", "scan", site.url("/page")],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while site.hits.get("/slow.jpg", 0) == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert site.hits.get("/slow.jpg"), "the browser never reached the slow image"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    home = Settings.from_env().home
    # A worker starting up reclaims what the killed scan left: browser and directory.
    r = run_hotline(
        "worker", "--burst", env=hotline_env | {"HOTLINE_REDIS_URL": "redis://127.0.0.1:1"}
    )
    time.sleep(0.5)
    assert list(scans_root(home).glob(f"scan-{proc.pid}-*")) == []
    assert chromium_pids() - before == set()
    assert _files_with(marker, _places(home)) == []
    assert marker not in (r.stdout + r.stderr).encode()


def _renderers_during_scan(site: Site, hotline_env: dict[str, str]) -> list[dict[str, str]]:
    """/proc status of every renderer, read while a one-site page with an iframe loads."""
    seen: list[dict[str, str]] = []

    async def peek(request):
        from aiohttp import web

        for pid in chromium_pids():
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"--type=renderer" in cmd:
                status = dict(
                    line.split(":\t", 1)
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                    if ":\t" in line
                )
                seen.append(status)
        return web.Response(text="<p>peeked</p>", content_type="text/html")

    site.routes["/peek"] = peek
    site.routes["/"] = ("text/html", b'<iframe src="/peek"></iframe>')
    r = run_hotline("scan", site.url("/"), "--json", env=hotline_env)
    assert json.loads(r.stdout)["status"] == "completed"
    assert seen, "no renderer process was running during the scan"
    return seen


@pytest.mark.skipif(os.geteuid() != 0, reason="the privilege drop applies when running as root")
def test_renderers_run_sandboxed_as_nobody(site: Site, hotline_env) -> None:
    for status in _renderers_during_scan(site, hotline_env):
        assert status["Uid"].split()[0] == "65534"
        assert status["Seccomp"].strip() == "2"  # seccomp-bpf filter active
        assert status["NoNewPrivs"].strip() == "1"


def test_no_renderer_for_browser_ui(site: Site, hotline_env) -> None:
    """Headless Chromium preloads its omnibox pop-up in a renderer of its own (~75 MiB);
    a page of one site needs one renderer, and Chromium may keep one spare."""
    assert len(_renderers_during_scan(site, hotline_env)) <= 2
