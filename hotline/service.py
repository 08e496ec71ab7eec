"""``hotline up``: the whole service in one process tree, stopped cleanly by a signal."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from typing import Any

from rq.job import Job
from sqlalchemy.engine import make_url

from store import Store
from workers import PrivateRedis, connect, enqueue_scan

from .config import Settings

log = logging.getLogger(__name__)


def requeue_waiting(store: Store, settings: Settings) -> int:
    """Enqueue stored reports whose job Redis no longer has (fresh or restarted Redis)."""
    conn = connect(settings)
    count = 0
    for report_id in store.reports_in_state("queued", "scanning"):
        if not Job.exists(f"scan-{report_id}", connection=conn):
            enqueue_scan(conn, settings, report_id)
            count += 1
    return count


def up(settings: Settings, workers: int) -> int:
    """Run Redis (when private) and ``workers`` worker processes until SIGINT/SIGTERM."""
    store = Store(settings.database_url)
    store.migrate()
    private = None
    env = dict(os.environ)
    if settings.redis_url is None:
        private = PrivateRedis(settings.redis_socket).start()
        env["HOTLINE_REDIS_URL"] = private.url
        settings = settings.with_redis(private.url)
    stopping = False

    def stop(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        requeued = requeue_waiting(store, settings)
        procs = [_spawn_worker(env) for _ in range(workers)]
        print(
            f"hotline is up: {workers} worker(s), Redis {private.url if private else 'external'}, "
            f"database {_safe_url(settings.database_url)}"
            + (f", {requeued} waiting report(s) re-queued" if requeued else "")
            + ". Ctrl-C stops.",
            flush=True,
        )
        while not stopping:
            for i, p in enumerate(procs):
                if p.poll() is not None and not stopping:
                    log.warning("worker %s exited with %s; starting another", p.pid, p.returncode)
                    procs[i] = _spawn_worker(env)
            time.sleep(0.5)
    finally:
        print("hotline: stopping…", file=sys.stderr, flush=True)
        _stop_all(procs)
        if private:
            private.stop()
    return 0


def _spawn_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "hotline", "worker"], env=env)


def _stop_all(procs: list[subprocess.Popen[bytes]], grace: float = 30.0) -> None:
    """SIGTERM lets RQ finish the job at hand (warm shutdown); stragglers are killed."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()


def _safe_url(url: str) -> str:
    """A database URL without its password, for printing."""
    return make_url(url).render_as_string(hide_password=True)
