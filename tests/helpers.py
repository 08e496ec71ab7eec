"""Test and benchmark helpers: benign images, a loopback web site, the real CLI.

Every server a test talks to runs on loopback and is started by the test; the images
are scikit-image's bundled photographs and generated pictures.
"""

from __future__ import annotations

import asyncio
import io
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from PIL import Image
from skimage import data as skdata

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")


def photo(name: str) -> Image.Image:
    """A real photograph that ships inside scikit-image."""
    return Image.fromarray(getattr(skdata, name)()).convert("RGB")


def encode(img: Image.Image, fmt: str = "JPEG", **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


class Site:
    """An aiohttp site on 127.0.0.1, run in a thread so sync tests and subprocesses can use it.

    ``routes`` maps a path to a handler or to ``(content_type, body)``; ``hits`` counts
    requests per path.
    """

    def __init__(self, host: str = "127.0.0.1", ssl_context: ssl.SSLContext | None = None) -> None:
        self.host = host
        self.ssl_context = ssl_context
        self.routes: dict[str, Callable | tuple[str, bytes]] = {}
        self.hits: dict[str, int] = {}
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._runner: web.AppRunner | None = None

    def url(self, path: str = "/") -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{self.host}:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.hits[request.path] = self.hits.get(request.path, 0) + 1
        route = self.routes.get(request.path)
        if route is None:
            raise web.HTTPNotFound()
        if callable(route):
            return await route(request)
        ctype, body = route
        return web.Response(body=body, headers={"Content-Type": ctype})

    def start(self) -> Site:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        ready = threading.Event()

        async def serve() -> None:
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.host, 0, ssl_context=self.ssl_context)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]
            ready.set()

        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(serve(), self.loop)
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._runner:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


def run_hotline(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run the real ``hotline`` command line in a subprocess, as a user would."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")} | env
    return subprocess.run(
        [sys.executable, "-m", "hotline", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
