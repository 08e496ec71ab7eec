"""A takedown simulator: pages on a loopback site whose behaviour a test switches over
time (live, 404, 410, placeholder, challenge, swapped image, flapping 503, 429, slow,
cloaking, …), and referred reports made from its pages without a browser scan."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime

from aiohttp import web

from hotline.intake import scan_document
from matcher import hash_image
from scanner import PageResult
from store import Store

from .helpers import Site, encode, photo

KNOWN = encode(photo("astronaut").resize((256, 256)), quality=85)
OTHER = encode(photo("chelsea").resize((256, 256)), quality=85)
SLOW_S = 3.0  # longer than the HOTLINE_PAGE_TIMEOUT the tests set


def _is_browser(request: web.Request, wants: str) -> bool:
    """Chromium asks for text/html (pages) or image/* (images); scripts send */*."""
    return wants in request.headers.get("Accept", "")


class Simulator:
    """Each scenario NAME has /NAME/page (showing /NAME/img.jpg) and /NAME/img.jpg;
    ``page[NAME]`` and ``image[NAME]`` say how they answer right now."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.page: dict[str, str] = {}
        self.image: dict[str, str] = {}
        self.requests: Counter[str] = Counter()

    def add(self, name: str, page: str = "live", image: str = "live") -> None:
        self.page[name], self.image[name] = page, image
        self.site.routes[f"/{name}/page"] = lambda r, n=name: self._page(r, n)
        self.site.routes[f"/{name}/img.jpg"] = lambda r, n=name: self._image(r, n)

    def page_url(self, name: str) -> str:
        return self.site.url(f"/{name}/page")

    def image_url(self, name: str) -> str:
        return self.site.url(f"/{name}/img.jpg")

    async def _page(self, request: web.Request, name: str) -> web.StreamResponse:
        mode = await self._mode(self.page[name], request, name, "page", "text/html")
        if mode == "live":
            return _html(f'<h1>gallery</h1><img src="/{name}/img.jpg" width="256">')
        if mode == "placeholder":
            return _html("<h1>This account has been suspended</h1>")
        if mode == "challenge":  # a CDN's bot check, answered with 200
            return _html(
                '<p>Checking your browser</p><script src="/cdn-cgi/challenge-platform/h/b/'
                'orchestrate/chl_page/v1"></script>',
                title="Just a moment...",
            )
        if mode == "captcha":  # a bare page asking to prove one is human
            return _html('<p>Please verify you are human.</p><div class="g-recaptcha"></div>')
        if mode == "reset":
            request.transport.close()
            return web.Response()
        return _html("<p>no</p>", status=int(mode))

    async def _image(self, request: web.Request, name: str) -> web.StreamResponse:
        mode = await self._mode(self.image[name], request, name, "image", "image/")
        if mode in ("live", "other"):
            return web.Response(body=KNOWN if mode == "live" else OTHER, content_type="image/jpeg")
        return _html("<p>no</p>", status=int(mode))

    async def _mode(
        self, mode: str, request: web.Request, name: str, part: str, accept: str
    ) -> str:
        """Resolve behaviours that depend on the request into live, another mode or a status."""
        key = f"{name}/{part}"
        self.requests[key] += 1
        if mode == "slow":  # live, but later than the checks wait
            await asyncio.sleep(SLOW_S)
            return "live"
        if mode == "cloak":  # scripts get a 404, browsers the real thing
            return "live" if _is_browser(request, accept) else "404"
        if mode == "flap":  # every other request is a 503
            return "503" if self.requests[key] % 2 else "live"
        return mode


def _html(body: str, status: int = 200, title: str = "t") -> web.Response:
    return web.Response(
        text=f"<!doctype html><title>{title}</title>{body}", status=status, content_type="text/html"
    )


def scanned_report(store: Store, url: str, image_url: str, data: bytes = KNOWN) -> int:
    """A report of ``url`` whose latest scan saw ``data`` at ``image_url`` (no browser)."""
    report_id = store.add_report(url, source="simulator")
    now = datetime.now(UTC)
    page = PageResult(
        url=url, started_at=now, final_url=url, http_status=200, server_ip="127.0.0.1"
    )
    page.finished_at = now
    page.meta["stage"] = "browser"
    store.save_scan(report_id, scan_document(page, [(image_url, hash_image(data))], [[]]))
    store.set_report_state(report_id, "done")
    return report_id
