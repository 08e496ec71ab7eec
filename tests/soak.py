"""Soak: ``make soak`` (``python -m tests.soak [N]``, default 2000 reports).

``hotline up`` (2 workers, private Redis, SQLite) takes N reports of local pages that
mix good, slow, failing and hostile ones, while one worker is killed with SIGKILL and
the private Redis is killed (it comes back empty). Every report must reach a terminal
state, none lost and none scanned twice; throughput and peak memory are printed.
Bounded: loopback only, and it gives up after an hour.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from aiohttp import web

from hotline.config import Settings
from store import Store
from workers import connect, enqueue_scan

from .helpers import ROOT, Site, encode, photo, tree_pss

LIMIT_S = 3600


def _site() -> Site:
    site = Site().start()
    img = encode(photo("coffee").resize((160, 100)))

    async def slow(_request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response(text='<img src="/i.jpg">', content_type="text/html")

    site.routes.update(
        {
            "/i.jpg": ("image/jpeg", img),
            "/good": ("text/html", b'<img src="/i.jpg"><img src="/i.jpg?2">'),
            "/slow": slow,
            "/hostile": (
                "text/html",
                b'<img src="http://169.254.169.254/x.png"><script>for(;;){}</script>',
            ),
        }
    )
    return site


def _urls(site: Site, n: int) -> list[str]:
    kinds = [
        site.url("/good?n={}"),
        site.url("/i.jpg?n={}"),  # an image URL: no browser
        site.url("/slow?n={}"),
        "http://127.0.0.1:9/refused?n={}",  # connection refused
        "http://10.1.2.3/private?n={}",  # blocked before any connection
        site.url("/hostile?n={}"),  # a page that never stops running
        site.url("/missing?n={}"),  # 404
    ]
    weights = [4, 3, 1, 1, 1, 1, 1]
    pattern = [k for k, w in zip(kinds, weights, strict=True) for _ in range(w)]
    return [pattern[i % len(pattern)].format(i) for i in range(n)]


def main(n: int = 2000) -> int:
    site = _site()
    home = tempfile.mkdtemp(prefix="hotline-soak-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")} | {
        "HOTLINE_HOME": home,
        "HOTLINE_ALLOW_NETWORKS": "127.0.0.1/32",
        "HOTLINE_SCAN_TIMEOUT": "10s",
        "HOTLINE_PAGE_TIMEOUT": "5s",
        "HOTLINE_SWEEP_INTERVAL": "5s",
    }
    os.environ.update(env)
    log = Path(home) / "up.log"
    up = subprocess.Popen(
        [sys.executable, "-m", "hotline", "up", "--workers", "2"],
        env=env,
        cwd=ROOT,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            own, children = tree_pss(up.pid)
            peak[0] = max(peak[0], own + children)

    threading.Thread(target=sample, daemon=True).start()
    try:
        while "hotline is up" not in log.read_text():
            time.sleep(0.2)
        settings = Settings.from_env()
        store = Store(settings.database_url)
        conn = connect(settings.with_redis(f"unix://{settings.redis_socket}"))
        t0 = time.monotonic()
        ids = []
        for url in _urls(site, n):
            ids.append(store.add_report(url, "soak"))
            enqueue_scan(conn, settings, ids[-1])
        print(f"soak: {n} reports submitted in {time.monotonic() - t0:.1f} s", flush=True)
        faults = {n // 4: "kill a worker", n // 2: "kill Redis"}
        while time.monotonic() - t0 < LIMIT_S:
            states = _states(store)
            finished = states["done"] + states["failed"]
            for at, fault in list(faults.items()):
                if finished >= at:
                    _inject(fault, up.pid, settings)
                    print(f"soak: {finished}/{n} finished, fault: {fault}", flush=True)
                    del faults[at]
            if finished == n:
                break
            time.sleep(2)
        took = time.monotonic() - t0
        scans = Counter(len(store.get_report(i)["scans"]) for i in ids)
        states = _states(store)
        print(f"soak: {dict(states)} after {took:.0f} s; scans per report {dict(scans)}")
        print(
            f"soak: throughput {n / took * 60:.0f} reports/min with 2 workers; "
            f"peak memory (PSS of the whole service) {peak[0] / 2**20:.0f} MiB"
        )
        lost = n - states["done"] - states["failed"]
        duplicated = sum(v for k, v in scans.items() if k > 1)
        print(f"soak: lost {lost}, duplicated {duplicated}")
        return 0 if lost == 0 and duplicated == 0 else 1
    finally:
        stop.set()
        up.send_signal(signal.SIGTERM)
        up.wait(120)
        site.stop()


def _states(store: Store) -> Counter[str]:
    """Reports per state (the soak's database holds only its own reports)."""
    return Counter(
        {s: len(store.reports_in_state(s)) for s in ("queued", "scanning", "done", "failed")}
    )


def _inject(fault: str, up_pid: int, settings: Settings) -> None:
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
        if fault == "kill a worker" and ppid == up_pid and b"worker" in cmd:
            os.kill(int(d.name), signal.SIGKILL)
            return
        if fault == "kill Redis" and str(settings.redis_socket).encode() in b" ".join(cmd):
            os.kill(int(d.name), signal.SIGKILL)
            return


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
