"""Open a reported URL the way a visitor would and hand every image to a sink.

Two stages share one egress proxy: a cheap HTTP fetch (aiohttp) that settles
network errors and serves URLs that are themselves images, then the browser for
pages. Image bytes exist only between the response and the sink call; the sink
(hash and forget) is the only consumer.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import Browser, Page, Response, async_playwright
from playwright.async_api import Error as PlaywrightError

from .egress import EgressPolicy, EgressProxy, Resolver, check_url
from .sandbox import ScanDir, sandbox_user, scans_root, sweep

log = logging.getLogger(__name__)

_HTML_TYPES = ("text/html", "application/xhtml+xml", "text/plain", "")
_TEXTUAL = ("text/", "application/json", "application/javascript", "application/xml")
# Chromium net errors → our error kinds.
_NET_ERRORS = {
    "ERR_NAME_NOT_RESOLVED": "dns",
    "ERR_NAME_RESOLUTION_FAILED": "dns",
    "ERR_CONNECTION_REFUSED": "connect",
    "ERR_CONNECTION_RESET": "connect",
    "ERR_CONNECTION_CLOSED": "connect",
    "ERR_CONNECTION_FAILED": "connect",
    "ERR_ADDRESS_UNREACHABLE": "connect",
    "ERR_EMPTY_RESPONSE": "connect",
    "ERR_TIMED_OUT": "timeout",
    "ERR_CONNECTION_TIMED_OUT": "timeout",
    "ERR_TOO_MANY_REDIRECTS": "redirects",
    "ERR_ABORTED": "not_html",
}
# Shapes of images by their first bytes: a server's Content-Type is not trusted.
_MAGIC = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"\x00\x00\x01\x00", "ico"),
)


def sniff_image(head: bytes) -> str | None:
    """The image format the bytes start with, or None when they are not an image."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis", b"heic", b"mif1"):
        return "avif"
    return None


class ScanError(Exception):
    """Why a scan could not see the page; ``kind`` is stable, ``message`` is for people."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "message": self.message}


@dataclass(frozen=True)
class ScanLimits:
    """Bounds that keep one hostile page from exhausting a worker."""

    page_timeout: float = 30.0
    scan_timeout: float = 90.0
    max_image_bytes: int = 20 * 2**20
    max_scan_bytes: int = 200 * 2**20
    max_images: int = 500
    max_pixels: int = 50_000_000
    scroll_steps: int = 30


@dataclass(frozen=True)
class Identity:
    """How the scanner presents itself; recorded on each scan so checks can repeat it."""

    user_agent: str
    locale: str = "en-US"
    viewport: tuple[int, int] = (1366, 768)


@dataclass
class FoundImage:
    """One image response, alive only for the duration of the sink call."""

    url: str
    data: bytes
    content_type: str | None


ImageSink = Callable[[FoundImage], None]


@dataclass
class PageResult:
    """Everything a scan learned about the page except the images themselves."""

    url: str
    started_at: datetime
    final_url: str | None = None
    http_status: int | None = None
    redirects: list[dict[str, Any]] = field(default_factory=list)
    server_ip: str | None = None
    finished_at: datetime | None = None
    error: ScanError | None = None
    blocked: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Browsing:
    """Where the browser is and how it should look; shared by intake scans and checks."""

    executable: str
    home: Path
    identity: Identity


async def capture(
    url: str,
    *,
    policy: EgressPolicy,
    limits: ScanLimits,
    browsing: Browsing,
    sink: ImageSink,
    resolver: Resolver | None = None,
    upstream: str | None = None,
    browser: bool = True,
) -> PageResult:
    """Scan ``url``: never raises for anything the page does; errors land on the result.

    ``upstream`` is an optional HTTP proxy that every connection leaves through (so
    scanned sites do not see the hotline's address); ``resolver`` replaces DNS (tests).
    ``browser=False`` stops after the HTTP stage: a takedown check needs only the status
    of most URLs and opens the browser just for pages that still answer.
    """
    result = PageResult(url=url, started_at=datetime.now(UTC))
    identity = browsing.identity
    result.meta.update(
        user_agent=identity.user_agent,
        locale=identity.locale,
        viewport="x".join(map(str, identity.viewport)),
    )
    refusal = check_url(url, policy)
    if refusal:
        result.error = ScanError("blocked", f"refused before fetching: {refusal}")
        result.finished_at = datetime.now(UTC)
        return result
    collector = _Collector(limits, sink)
    t0 = time.monotonic()
    async with (
        EgressProxy(policy, resolver=resolver, upstream=upstream) as proxy,
        aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=limits.page_timeout),
            headers={"User-Agent": identity.user_agent, "Accept-Language": identity.locale},
        ) as session,
    ):
        scan = _Scan(url, proxy, session, limits, browsing, collector, result)
        try:
            async with asyncio.timeout(limits.scan_timeout):
                is_image = await scan.http_stage()
                result.meta["http_stage_s"] = round(time.monotonic() - t0, 3)
                if not is_image and browser:
                    await scan.browser_stage()
                elif not is_image:
                    result.meta["stage"] = "http"
        except ScanError as e:
            result.error = e
        except TimeoutError:
            result.error = ScanError(
                "timeout", f"scan exceeded its {limits.scan_timeout:g} s limit and was stopped"
            )
        result.blocked = proxy.refused()
        result.server_ip = proxy.server_ip(*_host_port(result.final_url or url))
    result.skipped = collector.skipped
    result.meta.update(collector.counts(), scan_s=round(time.monotonic() - t0, 3))
    result.finished_at = datetime.now(UTC)
    return result


def _host_port(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    return (parts.hostname or ""), (parts.port or default)


class _Collector:
    """Deduplicates image URLs, applies the byte/count limits and feeds the sink."""

    def __init__(self, limits: ScanLimits, sink: ImageSink) -> None:
        self.limits = limits
        self.sink = sink
        self.seen: set[str] = set()
        self.total_bytes = 0
        self.images = 0
        self.claimed = 0
        self.skipped: list[dict[str, str]] = []

    def claim(self, url: str, declared_size: int | None = None) -> bool:
        """Whether ``url`` should be fetched and hashed (first sighting, within limits)."""
        if url in self.seen:
            return False
        self.seen.add(url)
        if self.claimed >= self.limits.max_images:
            return self.skip(url, "max_images", f"more than {self.limits.max_images} images")
        if declared_size is not None and declared_size > self.limits.max_image_bytes:
            return self.skip(url, "too_large", f"declares {declared_size} bytes")
        self.claimed += 1
        return True

    def release(self, url: str) -> None:
        """Give a claim back: the response had no usable body, another way may get it."""
        self.seen.discard(url)
        self.claimed -= 1

    def skip(self, url: str, kind: str, message: str) -> bool:
        self.skipped.append({"url": _short(url), "reason": kind, "message": message})
        return False

    async def feed(self, url: str, data: bytes, content_type: str | None) -> None:
        if not data or (
            sniff_image(data[:16]) is None and not (content_type or "").startswith("image/")
        ):
            return
        if len(data) > self.limits.max_image_bytes:
            self.skip(url, "too_large", f"{len(data)} bytes, limit {self.limits.max_image_bytes}")
            return
        if self.total_bytes + len(data) > self.limits.max_scan_bytes:
            self.skip(url, "max_scan_bytes", f"scan byte budget {self.limits.max_scan_bytes} spent")
            return
        self.total_bytes += len(data)
        self.images += 1
        # Hashing is CPU work: keep the event loop (and the egress proxy on it) responsive.
        await asyncio.to_thread(self.sink, FoundImage(url, data, content_type))

    def counts(self) -> dict[str, int]:
        return {"images_fed": self.images, "image_bytes": self.total_bytes}


def _short(url: str) -> str:
    """URLs in records stay readable: a data: URI is cut to its header."""
    return url if not url.startswith("data:") else url[: url.find(",") + 1] + "…"


@dataclass
class _Scan:
    """The state one scan's stages share."""

    url: str
    proxy: EgressProxy
    session: aiohttp.ClientSession
    limits: ScanLimits
    browsing: Browsing
    collector: _Collector
    result: PageResult

    def egress_error(self, url: str) -> ScanError | None:
        """The proxy's own account of why a connection to ``url``'s host failed, if it did."""
        event = self.proxy.failure_for(*_host_port(url))
        return ScanError(event.outcome, event.message) if event else None

    async def http_stage(self) -> bool:
        """Fetch the URL directly; settle network errors, and images without a browser.

        Returns True when the URL was an image (already fed to the sink). HTTP error
        statuses are left for the browser to judge: sites answer crawlers differently.
        """
        result, limits = self.result, self.limits
        try:
            async with self.session.get(self.url, proxy=self.proxy.url, max_redirects=10) as resp:
                result.redirects = [
                    {"url": str(h.url), "status": h.status, "kind": "http"} for h in resp.history
                ]
                result.final_url = str(resp.url)
                if resp.headers.get("X-Hotline-Egress"):
                    # The guard answered for a site it did not reach: say why, as the
                    # browser stage would (a check without the browser needs it here).
                    raise self.egress_error(result.final_url) or ScanError(
                        "blocked", "refused by the egress guard"
                    )
                result.http_status = resp.status
                ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
                head = await resp.content.read(16)
                if (ctype in _HTML_TYPES and not sniff_image(head)) or resp.status >= 400:
                    return False
                if not sniff_image(head) and not ctype.startswith("image/"):
                    raise ScanError(
                        "not_html", f"{result.final_url} is neither a page nor an image ({ctype})"
                    )
                body = await _read_capped(resp, head, limits.max_image_bytes)
                if body is None:
                    raise ScanError(
                        "too_large", f"image over the {limits.max_image_bytes}-byte limit"
                    )
        except aiohttp.ClientError as e:
            raise self.fetch_error(e, result.final_url or self.url) from None
        except TimeoutError:
            raise ScanError("timeout", f"no answer within {limits.page_timeout:g} s") from None
        if self.collector.claim(result.final_url):
            await self.collector.feed(result.final_url, body, ctype)
        result.meta["stage"] = "http"
        return True

    def fetch_error(self, e: aiohttp.ClientError, url: str) -> ScanError:
        """An aiohttp failure in the scan's error kinds, preferring the proxy's account."""
        if isinstance(e, aiohttp.TooManyRedirects):
            return ScanError("redirects", "more than 10 redirects")
        if isinstance(e, aiohttp.ClientHttpProxyError):
            return self.egress_error(str(e.request_info.real_url)) or ScanError(
                "connect", f"proxy refused: {e.status} {e.message}"
            )
        if isinstance(e, aiohttp.ClientSSLError | aiohttp.ClientConnectorCertificateError):
            return ScanError("tls", f"TLS failure: {e}")
        if isinstance(e, aiohttp.ClientResponseError):
            return ScanError("http", f"malformed HTTP response: {e.message}")
        return self.egress_error(url) or ScanError("connect", f"connection failed: {e}")

    async def fetch_image(self, url: str) -> None:
        """Fetch an image the page names but the browser did not load (other srcset
        candidates, images served from memory); failures are skipped quietly."""
        try:
            async with self.session.get(url, proxy=self.proxy.url, max_redirects=5) as resp:
                if resp.status >= 300:
                    return
                body = await _read_capped(resp, b"", self.limits.max_image_bytes)
                ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
        except (aiohttp.ClientError, TimeoutError):
            return
        if body is None:
            self.collector.skip(url, "too_large", f"over {self.limits.max_image_bytes} bytes")
        else:
            await self.collector.feed(url, body, ctype or None)

    async def browser_stage(self) -> None:
        self.result.meta["stage"] = "browser"
        pending: set[asyncio.Task[None]] = set()

        def on_response(response: Response) -> None:
            task = asyncio.create_task(self.take_response(response))
            pending.add(task)
            task.add_done_callback(pending.discard)

        root = scans_root(self.browsing.home)
        sweep(root)  # browsers and directories of scans whose process was killed
        with ScanDir(root, self.browsing.executable, _DISABLED_FEATURES) as scan_dir:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(
                    executable_path=str(scan_dir.launcher),
                    chromium_sandbox=True,
                    args=[*_LAUNCH_ARGS, f"--proxy-server={self.proxy.url}"],
                    env=scan_dir.env,
                    timeout=self.limits.page_timeout * 1000,
                    handle_sigint=False,
                    handle_sigterm=False,
                    handle_sighup=False,
                )
                try:
                    page = await _open_page(browser, self.browsing, on_response)
                    await self.navigate(page)
                    await _settle(page, self.limits)
                    self.follow_client_redirects(page)
                    await self.note_challenge(page)
                    await self.dom_images(page)
                    await asyncio.gather(*pending, return_exceptions=True)
                finally:
                    for task in pending:
                        task.cancel()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(5):
                            await _quietly(browser.close())
                    scan_dir.kill()
        self.result.meta["sandbox_user"] = "nobody" if sandbox_user() else "self"

    async def take_response(self, response: Response) -> None:
        """Feed an image response to the collector; everything else is ignored."""
        if not _is_image_response(response):
            return
        length = response.headers.get("content-length")
        declared = int(length) if length and length.isdigit() else None
        if not self.collector.claim(response.url, declared):
            return
        try:
            data = await response.body()
        except PlaywrightError:
            data = b""
        if data:
            await self.collector.feed(response.url, data, response.headers.get("content-type"))
        else:
            # The browser could not hand the body over (streamed, evicted): fetch it.
            self.collector.release(response.url)
            if self.collector.claim(response.url):
                await self.fetch_image(response.url)

    async def navigate(self, page: Page) -> None:
        result, limits = self.result, self.limits
        try:
            response = await page.goto(
                self.url, wait_until="load", timeout=limits.page_timeout * 1000
            )
        except PlaywrightError as e:
            where = page.url if page.url.startswith("http") else self.url
            raise self.egress_error(where) or _net_error(e, limits) from None
        if response is None:
            raise ScanError("not_html", "the browser did not load a document")
        if response.headers.get("x-hotline-egress"):
            raise self.egress_error(response.url) or ScanError("blocked", "refused by egress guard")
        chain: list[dict[str, Any]] = []
        req = response.request.redirected_from
        while req is not None:
            prev = await req.response()
            chain.insert(
                0, {"url": req.url, "status": prev.status if prev else None, "kind": "http"}
            )
            req = req.redirected_from
        result.redirects = chain
        result.http_status = response.status
        result.final_url = response.url
        if response.headers.get("cf-mitigated") == "challenge":
            result.meta["challenge"] = "cloudflare"
        if response.status >= 400:
            raise ScanError("http_status", f"the page answered HTTP {response.status}")

    def follow_client_redirects(self, page: Page) -> None:
        """A meta refresh or script moved the page on: record the hop and the new URL."""
        if page.url != self.result.final_url and page.url.startswith(("http:", "https:")):
            self.result.redirects.append(
                {"url": self.result.final_url, "status": self.result.http_status, "kind": "client"}
            )
            self.result.final_url = page.url

    async def note_challenge(self, page: Page) -> None:
        """Record a bot wall ("meta.challenge"): the scan saw it, not the site, so an
        empty result proves nothing (a takedown check counts it as denied)."""
        try:
            wall = challenge_of(await page.evaluate(_PAGE_SIGNS))
        except PlaywrightError:
            return
        if wall:
            self.result.meta["challenge"] = wall

    async def dom_images(self, page: Page) -> None:
        """Images the network events cannot show: data: URIs, blob: URLs (read inside
        the page) and named images the browser did not load."""
        for frame in page.frames:
            try:
                sources = await frame.evaluate(_DOM_SOURCES)
            except PlaywrightError:
                continue
            for src in sources:
                if not self.collector.claim(src):
                    continue
                if src.startswith(("http:", "https:")):
                    await self.fetch_image(src)
                    continue
                try:
                    data = (
                        _decode_data_uri(src)
                        if src.startswith("data:")
                        else base64.b64decode(await frame.evaluate(_READ_BLOB, src))
                    )
                except (PlaywrightError, ValueError):
                    continue
                await self.collector.feed(_short(src), data, None)


async def _read_capped(resp: aiohttp.ClientResponse, head: bytes, cap: int) -> bytes | None:
    """The whole body, or None as soon as it passes ``cap`` bytes."""
    chunks, size = [head], len(head)
    async for chunk in resp.content.iter_chunked(65536):
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


_LAUNCH_ARGS = [
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--disable-domain-reliability",
    "--no-first-run",
    "--no-pings",
    "--mute-audio",
    "--disk-cache-size=1",
    # WebRTC could open UDP around the proxy.
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--webrtc-ip-handling-policy=disable_non_proxied_udp",
    # Chromium sends loopback directly unless told otherwise; everything goes via the guard.
    "--proxy-bypass-list=<-loopback>",
]

# Browser UI that headless Chromium preloads in renderers of its own (about 75 MiB a
# scan, a third of its renderer memory) and that a scan never shows.
_DISABLED_FEATURES = ("WebUIOmniboxPopup", "WebUIOmniboxAimPopup")

# Runs in every frame after load: every image source the page names, so that data:
# URIs, blob: URLs and srcset candidates the browser did not pick are hashed too.
_DOM_SOURCES = """() => {
  const out = new Set();
  const add = (u) => {
    if (!u) return;
    try { u = new URL(u, document.baseURI).href; } catch (e) { return; }
    if (/^(https?:|blob:|data:image)/.test(u)) out.add(u);
  };
  const srcset = (v) => {
    for (const part of (v || '').split(',')) add(part.trim().split(/\\s+/)[0]);
  };
  for (const el of document.querySelectorAll('*')) {
    const tag = el.tagName.toLowerCase();
    if (tag === 'img' || (tag === 'input' && el.type === 'image')) {
      add(el.currentSrc); add(el.getAttribute('src')); srcset(el.getAttribute('srcset'));
    } else if (tag === 'source') {
      srcset(el.getAttribute('srcset'));
    } else if (tag === 'video') {
      add(el.getAttribute('poster'));
    } else if (tag === 'image') {
      add(el.getAttribute('href') || el.getAttribute('xlink:href'));
    }
    const bg = getComputedStyle(el).backgroundImage;
    if (bg && bg !== 'none') for (const m of bg.matchAll(/url\\(["']?(.*?)["']?\\)/g)) add(m[1]);
  }
  return [...out];
}"""

_READ_BLOB = """async (u) => {
  const buf = new Uint8Array(await (await fetch(u)).arrayBuffer());
  let s = '';
  for (let i = 0; i < buf.length; i += 32768) {
    s += String.fromCharCode(...buf.subarray(i, i + 32768));
  }
  return btoa(s);
}"""

# What a bot wall shows instead of the site: its title, the sources of scripts, frames and
# forms, how much text the page has, and whether it holds a captcha widget. Strings only:
# a page can clobber document.title or form.action with its own elements.
_PAGE_SIGNS = """() => {
  const str = (v) => (typeof v === 'string' ? v : '');
  const found = document.querySelectorAll('script[src], iframe[src], form[action]');
  return {
    title: str(document.title),
    sources: Array.from(found, (e) => str(e.getAttribute('src') || e.getAttribute('action')))
      .slice(0, 200),
    text: str(document.body && document.body.innerText).length,
    captcha: !!document.querySelector('.g-recaptcha, .h-captcha, .cf-turnstile, #px-captcha'),
  };
}"""
# Vendors' challenge pages, by what they load or call themselves.
_WALLS = (
    ("cloudflare", re.compile(r"/cdn-cgi/challenge-platform/|challenges\.cloudflare\.com/")),
    ("cloudflare", re.compile(r"^(Just a moment\.\.\.|Attention Required! \| Cloudflare)$")),
    ("datadome", re.compile(r"captcha-delivery\.com/")),
    ("perimeterx", re.compile(r"captcha\.px-cdn\.net/|/px/captcha")),
    ("ddos-guard", re.compile(r"ddos-guard\.net/|^DDoS-Guard$")),
    ("incapsula", re.compile(r"/_Incapsula_Resource")),
    ("sucuri", re.compile(r"^(Sucuri WebSite Firewall|Access Denied - Sucuri Website Firewall)")),
)
# A captcha widget alone (comment forms have them too) makes a wall only on a bare page.
_BARE_TEXT = 1000


def challenge_of(signs: dict[str, Any]) -> str | None:
    """The bot wall a page is, from ``_PAGE_SIGNS``: a vendor's name, "captcha", or None."""
    title = signs.get("title")
    texts = [title.strip() if isinstance(title, str) else ""]
    texts += [src for src in signs.get("sources") or () if isinstance(src, str)]
    for vendor, pattern in _WALLS:
        if any(pattern.search(text) for text in texts):
            return vendor
    length = signs.get("text")
    if signs.get("captcha") is True and isinstance(length, int) and length < _BARE_TEXT:
        return "captcha"
    return None


async def _quietly(aw: Any) -> None:
    with contextlib.suppress(PlaywrightError):
        await aw


async def _open_page(browser: Browser, browsing: Browsing, on_response: Callable) -> Page:
    width, height = browsing.identity.viewport
    context = await browser.new_context(
        user_agent=browsing.identity.user_agent,
        locale=browsing.identity.locale,
        viewport={"width": width, "height": height},
        accept_downloads=False,
        service_workers="block",
        permissions=[],
    )
    context.on("response", on_response)
    page = await context.new_page()
    # Pop-ups are closed as they open; dialogs would block the page.
    context.on("page", lambda p: asyncio.ensure_future(_quietly(p.close())))
    context.on("dialog", lambda d: asyncio.ensure_future(_quietly(d.dismiss())))
    page.on("dialog", lambda d: asyncio.ensure_future(_quietly(d.dismiss())))
    return page


def _net_error(e: PlaywrightError, limits: ScanLimits) -> ScanError:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    if "Timeout" in type(e).__name__ or "Timeout" in text:
        return ScanError("timeout", f"page did not load within {limits.page_timeout:g} s")
    for code, kind in _NET_ERRORS.items():
        if code in text:
            return ScanError(kind, text)
    if "ERR_CERT" in text or "ERR_SSL" in text:
        return ScanError("tls", text)
    return ScanError("browser", text)


async def _settle(page: Page, limits: ScanLimits) -> None:
    """Scroll in steps until the page stops growing, so lazy images load; follow
    meta-refresh and script redirects (recorded by the final URL)."""
    last = -1
    for _ in range(limits.scroll_steps):
        try:
            height = await page.evaluate(
                "() => { window.scrollBy(0, 2 * window.innerHeight); "
                "return document.documentElement.scrollHeight - window.scrollY; }"
            )
        except PlaywrightError:
            # A script redirect replaced the document: let the new one load.
            await _quietly(page.wait_for_load_state("load", timeout=limits.page_timeout * 1000))
            continue
        if height == last:
            break
        last = height
        # Lazy images start loading within ~1250 px of the viewport: short pauses suffice.
        await asyncio.sleep(0.05)
    await _quietly(page.wait_for_load_state("networkidle", timeout=3000))


def _decode_data_uri(uri: str) -> bytes:
    header, _, payload = uri.partition(",")
    if header.endswith(";base64"):
        return base64.b64decode(payload)
    return urllib.parse.unquote_to_bytes(payload)


def _is_image_response(response: Response) -> bool:
    """Image loads always count; fetch/XHR/other only when not obviously text."""
    if response.status >= 300 or response.headers.get("x-hotline-egress"):
        return False
    rtype = response.request.resource_type
    if rtype in ("image", "media"):
        return True
    ctype = (response.headers.get("content-type") or "").split(";")[0].strip().lower()
    if rtype in ("fetch", "xhr", "other"):
        return not ctype.startswith(_TEXTUAL)
    return ctype.startswith("image/")
