"""Test and benchmark helpers: benign images, a loopback web site, the real CLI.

Every server a test talks to runs on loopback and is started by the test; the images
are scikit-image's bundled photographs and generated pictures.
"""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

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
        async def shutdown() -> None:
            if self._runner:
                await self._runner.cleanup()
            # Handlers still waiting (slow routes, hung clients) end here, not as
            # "Task was destroyed but it is pending" when the loop goes.
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
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


def _pss(pid: int) -> int:
    """Proportional set size: shared pages (Chromium's processes share many) counted once."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def child_pids() -> dict[int, list[int]]:
    """Every process's children, by parent pid, as /proc shows them now."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    return children


def tree_pss(root: int, exclude: Collection[int] = ()) -> tuple[int, int]:
    """(PSS of ``root``, PSS of all its descendants: Playwright's driver and Chromium),
    leaving out the processes in ``exclude`` and theirs."""
    children = child_pids()
    total, todo = 0, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if pid in exclude:
            continue
        total += _pss(pid)
        todo.extend(children.get(pid, []))
    return _pss(root), total


def mapped_memory(prefix: str, pid: int | str = "self") -> tuple[int, int]:
    """(RSS, PSS) in bytes of a process's mappings of files under ``prefix``: what it
    has resident of them, and its share when other processes map the same pages."""
    rss = pss = 0
    inside = False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(maxsplit=1)[0]
        if "-" in head and not head.endswith(":"):  # a mapping: "start-end perms … path"
            inside = prefix in line
        elif inside and head == "Rss:":
            rss += int(line.split()[1]) * 1024
        elif inside and head == "Pss:":
            pss += int(line.split()[1]) * 1024
    return rss, pss


def _hold_and_measure(
    work: Callable, args: tuple, prefixes: list[str], ready: Any, results: Any
) -> None:
    kept = work(*args)  # what work maps stays mapped until every process has measured
    ready.wait(600)
    results.put([mapped_memory(prefix) for prefix in prefixes])
    ready.wait(600)
    del kept


def memory_of_processes(
    work: Callable, args: tuple, prefixes: list[str], processes: int = 2
) -> list[list[tuple[int, int]]]:
    """Run ``work(*args)`` in several fresh processes at once (spawned: a fork would
    inherit this one's mappings); once all of them hold what it returned, each reports
    ``mapped_memory`` of each prefix. Returns, per process, the (RSS, PSS) per prefix."""
    spawn = multiprocessing.get_context("spawn")
    ready, results = spawn.Barrier(processes), spawn.Queue()
    procs = [
        spawn.Process(target=_hold_and_measure, args=(work, args, prefixes, ready, results))
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    measured = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(60)
    return measured


def chromium_pids() -> set[int]:
    """Every Chromium process on the machine (tests compare before and after)."""
    pids = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if b"chromium" in (d / "cmdline").read_bytes().split(b"\0")[0]:
                    pids.add(int(d.name))
            except OSError:
                continue
    return pids
