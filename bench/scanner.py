"""Scanner throughput and memory on a local gallery.

The gallery (served on loopback) has 30 photographs: half lazy-loaded below the fold,
some in an iframe, one as a CSS background. Measured: median scan time and pages per
minute with one and with two concurrent scans (this machine has 2 cores), and the peak
proportional memory (PSS) of the scanning process tree (Python, Playwright driver,
Chromium): one scan alone, and two at a time, where what each worker would hold is its
own Python process and half of the browsers' memory (the two share Chromium's and
Node's code pages). The gallery is served by a separate process, not measured.

Baseline, same run: a warm browser (started once) with a fresh context per page,
loading the same gallery with the same scrolling but without our sandbox launch,
egress proxy, hashing or DOM sweep, i.e. what a browser start per scan costs us.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import statistics
import tempfile
import threading
import time
from multiprocessing.connection import Connection

from playwright.async_api import async_playwright

from hotline import intake
from hotline.config import Settings
from matcher import Index
from tests.helpers import Site, encode, photo, tree_pss

PAGES = int(os.environ.get("BENCH_SCANNER_PAGES", "12"))


def _gallery(site: Site) -> None:
    base = photo("astronaut")
    images = {}
    for n in range(30):
        crop = base.crop((n * 9, n * 6, n * 9 + 320, n * 6 + 240)).resize((800, 600))
        images[f"/g/{n}.jpg"] = ("image/jpeg", encode(crop, quality=85))
    site.routes.update(images)
    eager = "".join(f'<img src="/g/{n}.jpg" width=200>' for n in range(0, 10))
    lazy = "".join(f'<img loading="lazy" src="/g/{n}.jpg" width=200>' for n in range(10, 25))
    framed = "".join(f'<img src="/g/{n}.jpg" width=100>' for n in range(25, 29))
    site.routes["/frame"] = ("text/html", framed.encode())
    site.routes["/"] = (
        "text/html",
        f"""<!doctype html><title>gallery</title>
<div style="background-image:url(/g/29.jpg);height:300px"></div>{eager}
<iframe src="/frame"></iframe><div style="height:5000px"></div>{lazy}""".encode(),
    )


def _serve_gallery(conn: Connection) -> None:
    """In a process of its own: serve the gallery until told to stop."""
    site = Site().start()
    _gallery(site)
    conn.send(site.url("/"))
    conn.recv()
    site.stop()


class _PeakRss:
    """Peak PSS of this process and, separately, of its descendants but ``exclude``."""

    def __init__(self, exclude: int) -> None:
        self.exclude = {exclude}
        self.own = 0
        self.children = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            own, children = tree_pss(os.getpid(), self.exclude)
            self.own = max(self.own, own)
            self.children = max(self.children, children)

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def _ours(url: str, settings: Settings, n: int, concurrency: int) -> list[float]:
    index = Index.build([])
    sem = asyncio.Semaphore(concurrency)
    times: list[float] = []

    async def one() -> None:
        async with sem:
            t0 = time.monotonic()
            doc = await intake.scan(url, settings, index)
            assert doc["status"] == "completed" and len(doc["images"]) == 30, doc["error"]
            times.append(time.monotonic() - t0)

    await asyncio.gather(*(one() for _ in range(n)))
    return times


async def _warm_baseline(url: str, n: int) -> list[float]:
    times = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=Settings.from_env().browser_path,
            chromium_sandbox=False,
            args=["--disable-gpu", "--disable-background-networking"],
        )
        for _ in range(n):
            t0 = time.monotonic()
            context = await browser.new_context()
            page = await context.new_page()
            await page.goto(url, wait_until="load")
            for _ in range(10):
                await page.evaluate("window.scrollBy(0, window.innerHeight)")
                await asyncio.sleep(0.1)
            await page.wait_for_load_state("networkidle")
            await context.close()
            times.append(time.monotonic() - t0)
        await browser.close()
    return times


def _report(name: str, times: list[float], wall: float) -> None:
    print(
        f"  {name:<44} median {statistics.median(times):5.2f} s   "
        f"p90 {sorted(times)[int(0.9 * (len(times) - 1))]:5.2f} s   "
        f"{len(times) / wall * 60:5.1f} pages/min"
    )


def _mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


def main() -> None:
    spawn = multiprocessing.get_context("spawn")
    conn, child_conn = spawn.Pipe()
    server = spawn.Process(target=_serve_gallery, args=(child_conn,), daemon=True)
    server.start()
    url = conn.recv()
    with tempfile.TemporaryDirectory() as home:
        os.environ.update(HOTLINE_HOME=home, HOTLINE_ALLOW_NETWORKS="127.0.0.1/32")
        settings = Settings.from_env()
        print(f"gallery: 30 photos (800x600 JPEG), {PAGES} scans per mode, {os.cpu_count()} cores")
        asyncio.run(_ours(url, settings, 1, 1))  # warm the OS caches
        t0 = time.monotonic()
        baseline = asyncio.run(_warm_baseline(url, PAGES))
        _report("baseline: warm browser, fresh context", baseline, time.monotonic() - t0)
        with _PeakRss(server.pid) as alone:
            t0 = time.monotonic()
            one = asyncio.run(_ours(url, settings, PAGES, 1))
            wall1 = time.monotonic() - t0
        _report("hotline: fresh sandboxed browser, 1 at a time", one, wall1)
        with _PeakRss(server.pid) as paired:
            t0 = time.monotonic()
            two = asyncio.run(_ours(url, settings, PAGES, 2))
            wall2 = time.monotonic() - t0
        _report("hotline: fresh sandboxed browser, 2 at a time", two, wall2)
        print(
            f"  peak memory, one scan alone: {_mib(alone.own + alone.children)} PSS "
            f"(Python {_mib(alone.own)}, Playwright driver and Chromium {_mib(alone.children)})"
        )
        print(
            f"  peak memory, two at a time: {_mib(paired.own + paired.children / 2)} PSS per scan "
            f"(a Python process each, {_mib(paired.own)}, and half of the two browsers' "
            f"{_mib(paired.children)})"
        )
        print("  targets: median <= 2.5 s, >= 40 pages/min with 2 workers, <= 500 MB per scan")
    conn.send("stop")
    server.join(10)


if __name__ == "__main__":
    main()
