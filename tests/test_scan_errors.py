"""Bad input gets a clear error kind, one bad image never fails a scan, and nothing
raises out of a scan."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
from aiohttp import web

from hotline import intake
from hotline.config import Settings
from matcher import Index
from scanner.capture import challenge_of

from .conftest import Site, encode, photo, run_hotline

pytestmark = pytest.mark.browser


def _scan(url: str, **kw) -> dict:
    return asyncio.run(intake.scan(url, Settings.from_env(), Index.build([]), **kw))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unresolvable_host(hotline_env) -> None:
    async def nxdomain(name: str) -> list[str]:
        raise OSError(f"{name}: Name or service not known")

    doc = _scan("http://no-such-host.invalid/page", resolver=nxdomain)
    assert doc["status"] == "failed"
    assert doc["error"]["kind"] == "dns"


def test_connection_refused(hotline_env) -> None:
    doc = _scan(f"http://127.0.0.1:{_closed_port()}/")
    assert doc["error"]["kind"] == "connect", doc["error"]


def test_blocked_address_never_contacted(hotline_env) -> None:
    for url in (
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.2/",
        "http://2130706434/",
        "file:///etc/passwd",
    ):
        doc = _scan(url)
        assert doc["error"]["kind"] == "blocked", (url, doc["error"])


def test_http_error_status(site: Site, hotline_env) -> None:
    doc = _scan(site.url("/missing"))
    assert doc["error"]["kind"] == "http_status"
    assert doc["http_status"] == 404


def test_timeout(site: Site, hotline_env, monkeypatch) -> None:
    async def slow(_request: web.Request) -> web.Response:
        await asyncio.sleep(10)
        return web.Response(text="late")

    site.routes["/slow"] = slow
    monkeypatch.setenv("HOTLINE_PAGE_TIMEOUT", "1s")
    doc = _scan(site.url("/slow"))
    assert doc["error"]["kind"] == "timeout", doc["error"]


def test_non_html_page(site: Site, hotline_env) -> None:
    site.routes["/doc.pdf"] = ("application/pdf", b"%PDF-1.4 not an image")
    doc = _scan(site.url("/doc.pdf"))
    assert doc["error"]["kind"] == "not_html"


def test_bad_and_oversized_images_do_not_fail_the_scan(
    site: Site, hotline_env, monkeypatch
) -> None:
    jpeg = encode(photo("chelsea"))
    monkeypatch.setenv("HOTLINE_MAX_IMAGE_BYTES", str(len(jpeg) + 10))
    site.routes.update(
        {
            "/good.jpg": ("image/jpeg", jpeg),
            "/truncated.jpg": ("image/jpeg", jpeg[: len(jpeg) // 3]),
            "/noise.png": ("image/png", b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 50),
            "/huge.png": ("image/png", encode(photo("astronaut"), "PNG")),
            "/p": (
                "text/html",
                b'<img src="/good.jpg"><img src="/truncated.jpg">'
                b'<img src="/noise.png"><img src="/huge.png">',
            ),
        }
    )
    doc = _scan(site.url("/p"))
    assert doc["status"] == "completed"
    by_name = {i["url"].rsplit("/", 1)[-1]: i for i in doc["images"]}
    assert by_name["good.jpg"]["error"] is None and by_name["good.jpg"]["phash"]
    assert by_name["noise.png"]["error"]["kind"] == "bad_image"
    assert by_name["noise.png"]["sha256"]  # exact hashes still recorded
    assert (
        by_name["truncated.jpg"]["error"] is None
        or by_name["truncated.jpg"]["error"]["kind"] == "bad_image"
    )
    assert "huge.png" not in by_name
    assert [s["reason"] for s in doc["meta"]["skipped"]] == ["too_large"]


def test_redirect_chain_recorded(site: Site, hotline_env) -> None:
    async def hop(request: web.Request) -> web.Response:
        raise web.HTTPFound(location="/b" if request.path == "/a" else "/final")

    site.routes.update({"/a": hop, "/b": hop, "/final": ("text/html", b"<p>here</p>")})
    doc = _scan(site.url("/a"))
    assert doc["status"] == "completed"
    assert doc["final_url"] == site.url("/final")
    assert doc["redirects"] == [
        {"url": site.url("/a"), "status": 302, "kind": "http"},
        {"url": site.url("/b"), "status": 302, "kind": "http"},
    ]


def test_redirect_to_forbidden_address_is_blocked(site: Site, hotline_env) -> None:
    async def evil(_request: web.Request) -> web.Response:
        raise web.HTTPFound(location="http://169.254.169.254/latest/")

    site.routes["/evil"] = evil
    doc = _scan(site.url("/evil"))
    assert doc["error"]["kind"] == "blocked"
    assert any("169.254.169.254" in b["url"] for b in doc["blocked"])


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_tls_failure(tmp_path: Path, hotline_env) -> None:
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    site = Site(ssl_context=ctx).start()
    site.routes["/"] = ("text/html", b"<p>self-signed</p>")
    try:
        doc = _scan(site.url("/"))
    finally:
        site.stop()
    assert doc["error"]["kind"] == "tls", doc["error"]


def test_challenge_pages_are_recorded(site: Site, hotline_env) -> None:
    """A bot wall answers 200 but hides the site: the scan says so, and the CLI too."""
    site.routes["/wall"] = (
        "text/html",
        b"<!doctype html><title>Just a moment...</title><p>Checking your browser</p>"
        b'<script src="/cdn-cgi/challenge-platform/h/b/orchestrate/chl_page/v1"></script>',
    )
    comments = "<p>" + "A long article about gardening. " * 60 + "</p>"
    site.routes["/article"] = (
        "text/html",
        f'<title>Blog</title>{comments}<form><div class="g-recaptcha"></div></form>'.encode(),
    )
    # A page that clobbers document.title and form.action with its own elements.
    site.routes["/clobber"] = (
        "text/html",
        b'<title>x</title><img name="title"><form action="/f"><input name="action"></form>',
    )
    assert _scan(site.url("/wall"))["meta"]["challenge"] == "cloudflare"
    assert "challenge" not in _scan(site.url("/article"))["meta"]  # a comment form's captcha
    clobbered = _scan(site.url("/clobber"))
    assert clobbered["status"] == "completed" and "challenge" not in clobbered["meta"]
    r = run_hotline("scan", site.url("/wall"), env=hotline_env)
    assert "challenge page (cloudflare)" in r.stdout


@pytest.mark.parametrize(
    ("signs", "wall"),
    [
        ({"title": "Attention Required! | Cloudflare"}, "cloudflare"),
        ({"sources": ["https://challenges.cloudflare.com/turnstile/v0/api.js"]}, "cloudflare"),
        ({"sources": ["https://geo.captcha-delivery.com/captcha/?initialCid=x"]}, "datadome"),
        ({"title": "DDoS-Guard"}, "ddos-guard"),
        ({"sources": ["/_Incapsula_Resource?SWJIYLWA=1"]}, "incapsula"),
        ({"captcha": True, "text": 40}, "captcha"),
        ({"captcha": True, "text": 5000}, None),
        ({"title": "Gallery", "sources": ["/js/app.js"], "text": 300}, None),
        ({"title": {}, "sources": [{}, None], "captcha": "yes", "text": "1"}, None),
    ],
)
def test_challenge_signs(signs: dict, wall: str | None) -> None:
    assert challenge_of(signs) == wall
