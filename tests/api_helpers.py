"""The API test bench: a live server on loopback with seeded reports, scans and matches.

Seeding calls Store methods directly (no scans run), so a test starts in well under a second.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
import requests
from aiohttp import web

from api import create_app
from hotline.config import Settings
from store import Store

MD5_KNOWN = "9e107d9d372bb6826bd81d3542a419d6"
PHASH_KNOWN = "c3c3c3c3c3c3c3c3"
PHASH_NEAR = "c3c3c3c3c3c3c3c0"  # 2 bits from PHASH_KNOWN
PDQ_KNOWN = "f0" * 32
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class ApiServer:
    """create_app() served by aiohttp on 127.0.0.1 in a thread, for sync tests and browsers."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.app = create_app(settings, store)
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> ApiServer:
        ready = threading.Event()

        async def serve() -> None:
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]
            ready.set()

        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(serve(), self.loop)
        assert ready.wait(10), "the API server did not start"
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


class Client(requests.Session):
    """requests with a base URL and a bearer token; redirects are answers, not followed."""

    def __init__(self, server: ApiServer, token: str | None) -> None:
        super().__init__()
        self.server = server
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, *args, **kwargs) -> requests.Response:  # type: ignore[override]
        kwargs.setdefault("timeout", 30)
        kwargs["allow_redirects"] = False
        return super().request(method, self.server.url(path), *args, **kwargs)


@dataclass
class Seeded:
    """What seed() stored: report ids by name, and a token secret per role."""

    reports: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)


def image(url: str, n: int, **changes: object) -> dict:
    return {
        "url": url,
        "md5": f"{n:032x}",
        "sha1": f"{n:040x}",
        "sha256": f"{n:064x}",
        "phash": f"{n * 7919:016x}",
        "pdq": f"{n * 104729:064x}",
        "pdq_quality": 100,
        "width": 640,
        "height": 480,
        "bytes": 12345,
        "format": "JPEG",
        "error": None,
        "matches": [],
        **changes,
    }


def scan(url: str, started: datetime, images: list[dict], **changes: object) -> dict:
    return {
        "url": url,
        "final_url": url,
        "status": "completed",
        "error": None,
        "http_status": 200,
        "redirects": [],
        "server_ip": "192.0.2.10",
        "started_at": started.isoformat(),
        "finished_at": (started + timedelta(seconds=4)).isoformat(),
        "matched": any(i["matches"] for i in images),
        "blocked": [],
        "meta": {},
        "images": images,
        **changes,
    }


def seed(store: Store) -> Seeded:
    """Three reports: a match on a known list (redirected, on gallery.example.test), a near
    copy of it elsewhere, and a clean page; one token per role."""
    seeded = Seeded()
    store.create_list("known-a1", category="A1")
    store.add_entries("known-a1", [("md5", MD5_KNOWN, "IWF-1", None)])
    [entry] = [e for e in store.iter_entries() if e["list"] == "known-a1"]
    match = {
        "list": "known-a1",
        "signal_type": "md5",
        "entry_id": "IWF-1",
        "entry_pk": entry["pk"],
        "category": "A1",
        "distance": 0,
        "threshold": 0,
        "retro": False,
    }

    def scanned(url: str, doc: dict, source: str | None = None) -> int:
        report_id = store.add_report(url, source)
        store.save_scan(report_id, doc)
        store.set_report_state(report_id, "done")
        return report_id

    hit = scanned(
        "http://short.example.test/x",
        scan(
            "http://short.example.test/x",
            T0,
            [
                image(
                    "http://cdn.gallery.example.test/1.jpg",
                    1,
                    md5=MD5_KNOWN,
                    phash=PHASH_KNOWN,
                    pdq=PDQ_KNOWN,
                    matches=[match],
                ),
                image("http://cdn.gallery.example.test/2.jpg", 2),
            ],
            final_url="https://www.gallery.example.test/album/7",
            redirects=[{"url": "http://short.example.test/x", "status": 302}],
            server_ip="192.0.2.7",
        ),
        "web-form",
    )
    near = scanned(
        "http://mirror.other.test/page",
        scan(
            "http://mirror.other.test/page",
            T0 + timedelta(days=1),
            [image("http://mirror.other.test/a.png", 3, phash=PHASH_NEAR, format="PNG")],
        ),
    )
    clean = scanned(
        "http://clean.example.org/",
        scan(
            "http://clean.example.org/",
            T0 + timedelta(days=2),
            [image("http://clean.example.org/l.gif", 4)],
        ),
    )
    seeded.reports = {"hit": hit, "near": near, "clean": clean}
    seeded.tokens = {
        role: store.create_token(f"{role}-1", role)[1] for role in ("intake", "analyst", "admin")
    }
    return seeded


@contextmanager
def seeded_api(
    env: pytest.MonkeyPatch, redis_url: str, home: str | None = None
) -> Iterator[tuple[ApiServer, Seeded, Store]]:
    """A migrated, seeded SQLite store behind a live API server (HOTLINE_HOME from `home`
    or the environment)."""
    env.setenv("HOTLINE_REDIS_URL", redis_url)
    if home:
        env.setenv("HOTLINE_HOME", home)
        env.delenv("HOTLINE_DATABASE_URL", raising=False)
    settings = Settings.from_env()
    store = Store(settings.database_url)
    store.migrate()
    seeded = seed(store)
    server = ApiServer(settings, store).start()
    try:
        yield server, seeded, store
    finally:
        server.stop()
        store.close()
