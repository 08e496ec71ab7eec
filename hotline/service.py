"""``hotline up``: the whole service in one process tree, stopped cleanly by a signal."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from typing import Any

import redis
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from store import Store
from workers import PrivateRedis, connect
from workers.sweeper import SweepResult, sweep_jobs

from .config import Settings

log = logging.getLogger(__name__)


def _children(workers: int) -> list[list[str]]:
    """The ``hotline`` subcommands that make up the service, one process each."""
    return [["worker"]] * workers + [["scheduler"], ["serve"]]


def up(settings: Settings, workers: int) -> int:
    """Run Redis (when private) and the service's processes until SIGINT/SIGTERM,
    restarting whatever dies and sweeping lost jobs back onto the queues."""
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
    commands = _children(workers)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        swept = _sweep(store, settings)
        procs = [_spawn(cmd, env) for cmd in commands]
        print(
            f"hotline is up: {workers} worker(s), Redis {private.url if private else 'external'}, "
            f"database {_safe_url(settings.database_url)}"
            + (
                f", {swept.requeued} waiting report(s) re-queued"
                if swept and swept.requeued
                else ""
            )
            + f". Web UI and API: http://{settings.api.host}:{settings.api.port}/ "
            "(log in with a token from `hotline tokens create`). Ctrl-C stops.",
            flush=True,
        )
        next_sweep = time.monotonic() + settings.sweep_interval
        while not stopping:
            if private and private.proc and private.proc.poll() is not None:
                log.warning("the private Redis died; starting it again")
                private.start()
                next_sweep = 0
            for i, p in enumerate(procs):
                if p.poll() is not None and not stopping:
                    log.warning(
                        "%s (pid %s) exited with %s; starting it again",
                        " ".join(commands[i]),
                        p.pid,
                        p.returncode,
                    )
                    procs[i] = _spawn(commands[i], env)
            if time.monotonic() >= next_sweep:
                _sweep(store, settings)
                next_sweep = time.monotonic() + settings.sweep_interval
            time.sleep(0.5)
    finally:
        print("hotline: stopping…", file=sys.stderr, flush=True)
        _stop_all(procs)
        if private:
            private.stop()
    return 0


def _sweep(store: Store, settings: Settings) -> SweepResult | None:
    """One sweep; an outage of the database or Redis is logged and tried again later."""
    try:
        return sweep_jobs(store, connect(settings), settings)
    except (redis.RedisError, SQLAlchemyError, OSError) as e:
        log.warning("sweep skipped, will retry: %s", str(e).splitlines()[0])
        return None


def _spawn(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "hotline", *command], env=env)


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
