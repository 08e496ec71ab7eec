"""Takedown verification at scale: HTTP-stage checks per second, and the scheduler with a
million monitored URLs.

Checks: referrals whose page, and whose referred image URL when there is one, answer
404 (most checks once material is gone), served by an aiohttp server in another process
on loopback, checked through ``monitor.check`` (egress guard, verdicts, evidence) 64 at a
time, in one process and in two (as two workers run them). Baseline, same run and
server: a plain aiohttp GET loop over the same URLs, one shared session, no guard, no
verdicts. Target: ≥ 500 checks/s on 2 cores.

Scheduler: a private redis-server holding BENCH_TAKEDOWN_URLS (default 1,000,000)
referrals on 50,000 hosts, all coming due within one 6-hour interval; the time to find
and enqueue them all (the workers' part, releasing hosts and taking jobs, is simulated
and not timed), and Redis bytes per URL. Baseline: one RQ scheduled job per URL
(``enqueue_at``) and RQ's own scheduler moving them when due, measured on
BENCH_TAKEDOWN_RQ_URLS (default 20,000) and scaled. Targets: ≤ 5 % of a core at a
6-hour cadence, ≤ 300 bytes of Redis per URL.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import redis
from aiohttp import web
from rq import Queue
from rq.scheduler import RQScheduler

from hotline.config import Settings
from monitor import Evidence, check
from monitor.schedule import BUSY, DUE, Scheduler, member
from workers import PrivateRedis
from workers.queues import RECHECK

CHECKS = int(os.environ.get("BENCH_TAKEDOWN_CHECKS", "3000"))
CONCURRENCY = 64
WORKERS = 2
URLS = int(os.environ.get("BENCH_TAKEDOWN_URLS", "1000000"))
RQ_URLS = int(os.environ.get("BENCH_TAKEDOWN_RQ_URLS", "20000"))
HOSTS = 50_000
INTERVAL = 6 * 3600
CHUNK = 50_000


def main() -> None:
    os.environ["HOTLINE_ALLOW_NETWORKS"] = "127.0.0.1/32"
    settings = Settings.from_env()
    bench_checks(settings)
    with tempfile.TemporaryDirectory() as tmp, PrivateRedis(Path(tmp) / "redis.sock") as r:
        conn = redis.Redis.from_url(r.url)
        bench_scheduler(conn, settings)
        conn.flushall()
        bench_rq_baseline(conn)


# checks


def _serve(port: multiprocessing.Queue, stop: multiprocessing.Event) -> None:
    async def gone(request: web.Request) -> web.Response:
        return web.Response(status=404, text="<!doctype html><p>not found</p>",
                            content_type="text/html")  # fmt: skip

    async def run() -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", gone)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port.put(site._server.sockets[0].getsockname()[1])
        while not stop.is_set():
            await asyncio.sleep(0.2)
        await runner.cleanup()

    asyncio.run(run())


def bench_checks(settings: Settings) -> None:
    ctx = multiprocessing.get_context("spawn")
    port_q, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=_serve, args=(port_q, stop), daemon=True)
    server.start()
    base = f"http://127.0.0.1:{port_q.get(timeout=30)}"
    try:
        rows = [
            (f"{label}, {urls}, {procs} process(es)", _in_processes(ctx, procs, kind, images, base))
            for images, urls in ((0, "page"), (1, "page + image URL"))
            for kind, label in (("ours", "monitor.check"), ("plain", "baseline: plain GETs"))
            for procs in (1, WORKERS)
        ]
    finally:
        stop.set()
        server.join(10)
    print(f"HTTP-stage checks of removed referrals (every URL answers 404), {CHECKS} checks,")
    print(
        f"{CONCURRENCY} at once per process (a worker's recheck job; `hotline up` runs {WORKERS})"
    )
    for label, (rate, cpu) in rows:
        print(f"  {label:56s} {rate:6.0f} checks/s {cpu * 1000:5.2f} ms CPU/check")
    worst = min(rate for label, (rate, _) in rows if "monitor" in label and f"{WORKERS} p" in label)
    print(f"  target ≥ 500 checks/s on 2 cores: {'met' if worst >= 500 else 'NOT met'}")


def _time_wait() -> int:
    """Loopback TCP connections in TIME_WAIT (Linux), 0 where that cannot be read."""
    try:
        fields = Path("/proc/net/sockstat").read_text().split("TCP:")[1].split()
    except (OSError, IndexError):
        return 0
    return int(fields[fields.index("tw") + 1])


def _in_processes(ctx, procs: int, kind: str, images: int, base: str) -> tuple[float, float]:
    """(checks per second, client CPU seconds per check) of CHECKS checks split over
    ``procs`` processes started together.

    Every fetch through the egress guard opens two short TCP connections; tens of
    thousands left in TIME_WAIT by the previous run slow the kernel's choice of a local
    port, so each run starts once they have drained (at most 90 s)."""
    deadline = time.monotonic() + 90
    while _time_wait() > 2000 and time.monotonic() < deadline:
        time.sleep(1)
    results, start = ctx.Queue(), ctx.Event()
    workers = [
        ctx.Process(target=_run_share, args=(kind, images, base, CHECKS // procs, start, results))
        for _ in range(procs)
    ]
    for w in workers:
        w.start()
    start.set()
    done = [results.get(timeout=600) for _ in workers]
    for w in workers:
        w.join(10)
    wall = max(d[0] for d in done)
    return sum(d[1] for d in done) / wall, sum(d[2] for d in done) / sum(d[1] for d in done)


def _run_share(kind: str, images: int, base: str, count: int, start, results) -> None:
    os.environ["HOTLINE_ALLOW_NETWORKS"] = "127.0.0.1/32"
    settings = Settings.from_env()
    start.wait()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    if kind == "ours":
        asyncio.run(_our_checks(base, settings, images, count))
    else:
        asyncio.run(_plain_gets(base, images, count))
    results.put((time.perf_counter() - t0, count, time.process_time() - cpu0))


async def _our_checks(base: str, settings: Settings, images: int, count: int) -> None:
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one(n: int) -> None:
        urls = tuple(f"{base}/img/{n}-{i}.jpg" for i in range(images))
        evidence = Evidence((("md5", f"{n:032x}"),), urls)
        async with slots:
            verdict, _ = await check(f"{base}/page/{n}", evidence, settings)
        assert verdict == "gone_http", verdict

    await asyncio.gather(*(one(n) for n in range(count)))


async def _plain_gets(base: str, images: int, count: int) -> None:
    slots = asyncio.Semaphore(CONCURRENCY)
    async with aiohttp.ClientSession() as session:

        async def get(url: str) -> int:
            async with session.get(url) as resp:
                await resp.read()
                return resp.status

        async def one(n: int) -> None:
            async with slots:
                statuses = [await get(f"{base}/page/{n}")]
                statuses += [await get(f"{base}/img/{n}-{i}.jpg") for i in range(images)]
            assert set(statuses) == {404}

        await asyncio.gather(*(one(n) for n in range(count)))


# scheduler


def _memory(conn: redis.Redis) -> int:
    return int(conn.info("memory")["used_memory"])


def _redis_cpu(conn: redis.Redis) -> float:
    info = conn.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def bench_scheduler(conn: redis.Redis, settings: Settings) -> None:
    rng = random.Random(5)
    now = time.time()
    before = _memory(conn)
    for start in range(0, URLS, CHUNK):
        pipe = conn.pipeline(transaction=False)
        pipe.zadd(
            DUE,
            {
                member(i, f"h{i % HOSTS}.hosting-{i % 97}.example"): now - rng.random() * INTERVAL
                for i in range(start + 1, min(URLS, start + CHUNK) + 1)
            },
        )
        pipe.execute()
    per_url = (_memory(conn) - before) / URLS
    scheduler = Scheduler(None, conn, settings, max_waiting=None)  # type: ignore[arg-type]
    queue = Queue(RECHECK, connection=conn)
    handed = ticks = 0
    cpu = wall = redis_cpu = 0.0
    while True:
        r0, c0, t0 = _redis_cpu(conn), time.process_time(), time.perf_counter()
        n = scheduler.tick(now)
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
        redis_cpu += _redis_cpu(conn) - r0
        if not n:
            break
        handed, ticks = handed + n, ticks + 1
        # What the workers would do meanwhile: take the jobs, let go of the hosts.
        queue.empty()
        conn.delete(BUSY)
    assert handed == URLS, handed
    share = (cpu + redis_cpu) / INTERVAL
    print(f"scheduler, {URLS:,} referrals on {HOSTS:,} hosts due within one 6-hour interval")
    print(f"  Redis memory          {per_url:6.0f} bytes per URL (target ≤ 300)")
    print(
        f"  find and enqueue all  {wall:6.1f} s wall in {ticks} passes: {cpu:.1f} s CPU "
        f"scheduler + {redis_cpu:.1f} s CPU Redis"
    )
    print(f"  share of one core     {share:.3%} at a 6-hour cadence (target ≤ 5 %)")


def bench_rq_baseline(conn: redis.Redis) -> None:
    queue = Queue(RECHECK, connection=conn)
    before = _memory(conn)
    due = datetime.now(UTC)
    for start in range(0, RQ_URLS, 1000):
        with conn.pipeline() as pipe:
            for i in range(start, min(RQ_URLS, start + 1000)):
                queue.enqueue_at(due, "workers.jobs.recheck", [member(i, f"h{i % HOSTS}")],
                                 pipeline=pipe)  # fmt: skip
            pipe.execute()
    per_url = (_memory(conn) - before) / RQ_URLS
    scheduler = RQScheduler([queue], connection=conn)
    scheduler.acquire_locks()
    r0, c0, t0 = _redis_cpu(conn), time.process_time(), time.perf_counter()
    while queue.count < RQ_URLS:
        scheduler.enqueue_scheduled_jobs()
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0 + _redis_cpu(conn) - r0
    assert queue.count == RQ_URLS, queue.count
    scale = URLS / RQ_URLS
    print(f"baseline: one RQ scheduled job per URL, {RQ_URLS:,} measured, scaled to {URLS:,}")
    print(f"  Redis memory          {per_url:6.0f} bytes per URL")
    print(f"  move all due jobs     {wall * scale:6.1f} s wall, {cpu * scale:.1f} s CPU (scaled)")
    print(f"  share of one core     {cpu * scale / INTERVAL:.3%} at a 6-hour cadence")
