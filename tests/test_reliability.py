"""Faults survived, nothing lost: killed workers, Redis lost or restarted, PostgreSQL
restarted, the database down at submit time, and workers of several "machines"
(separate HOTLINE_HOMEs) sharing one Redis and one PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from aiohttp import web
from rq import Queue
from rq.job import Job, JobStatus

from hotline.config import Settings
from scanner import scans_root
from store import Store
from workers import INTAKE, connect, enqueue_scan
from workers.sweeper import sweep_jobs

from .conftest import ROOT, Site, encode, photo, run_hotline
from .helpers import child_pids, chromium_pids

POSTGRES_URL = os.environ.get(
    "HOTLINE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def _page(site: Site) -> str:
    site.routes["/p.jpg"] = ("image/jpeg", encode(photo("coffee").resize((160, 100))))
    site.routes["/"] = ("text/html", b'<img src="/p.jpg">')
    return site.url("/")


def _submit(url: str, n: int, env: dict[str, str]) -> list[int]:
    """n reports of distinct URLs through the real `hotline submit`."""
    return [
        json.loads(run_hotline("submit", f"{url}?n={i}", "--json", env=env).stdout)["report_id"]
        for i in range(n)
    ]


def _worker(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    """A worker whose log goes to HOTLINE_HOME/worker.log (read it when a test fails)."""
    log = Path(env["HOTLINE_HOME"]) / "worker.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "hotline", "worker", *args],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (RQ's warm shutdown finishes the job at hand), then SIGKILL if it lingers."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _env(hotline_env: dict[str, str], **extra: str) -> dict[str, str]:
    return (
        {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")} | hotline_env | extra
    )


def test_enqueue_is_at_most_once(hotline_env, redis_url) -> None:
    settings = Settings.from_env().with_redis(redis_url)
    conn = connect(settings)
    store = Store(settings.database_url)
    store.migrate()
    report_id = store.add_report("http://127.0.0.1:9/x")
    for _ in range(3):
        enqueue_scan(conn, settings, report_id)
    assert Queue(INTAKE, connection=conn).job_ids.count(f"scan-{report_id}") == 1


def test_sweeper_requeues_what_redis_lost_and_fails_visibly(hotline_env, redis_url) -> None:
    settings = Settings.from_env().with_redis(redis_url)
    conn = connect(settings)
    store = Store(settings.database_url)
    store.migrate()
    lost = store.add_report("http://127.0.0.1:9/lost")  # stored, never queued (Redis was down)
    assert sweep_jobs(store, conn, settings).requeued == 1
    assert Job.fetch(f"scan-{lost}", connection=conn).get_status() == JobStatus.QUEUED
    conn.flushdb()  # Redis restarted empty
    assert sweep_jobs(store, conn, settings).requeued == 1
    # A job that used up its retries: the report is marked failed, an operator retries it.
    Job.fetch(f"scan-{lost}", connection=conn).set_status(JobStatus.FAILED)
    assert sweep_jobs(store, conn, settings).failed == 1
    assert store.get_report(lost)["state"] == "failed"
    r = run_hotline("retry", "--failed", env=hotline_env | {"HOTLINE_REDIS_URL": redis_url})
    assert r.returncode == 0, r.stderr
    assert store.get_report(lost)["state"] == "queued"
    assert Job.fetch(f"scan-{lost}", connection=conn).get_status() == JobStatus.QUEUED


def test_database_down_at_submit_is_an_error_not_a_silent_loss(hotline_env, redis_url) -> None:
    env = hotline_env | {
        "HOTLINE_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/none",
        "HOTLINE_REDIS_URL": redis_url,
    }
    r = run_hotline("submit", "http://127.0.0.1:9/", "--json", env=env)
    assert r.returncode == 2
    assert "database is unreachable" in r.stderr and "nothing was changed" in r.stderr
    assert r.stdout == ""


@pytest.mark.browser
def test_killed_work_horse_is_retried_and_its_browser_reaped(
    site: Site, hotline_env, redis_url
) -> None:
    first = {"hit": False}

    async def slow_once(_request: web.Request) -> web.Response:
        if not first["hit"]:
            first["hit"] = True
            await __import__("asyncio").sleep(20)
        return web.Response(
            body=encode(photo("rocket").resize((120, 90))), content_type="image/jpeg"
        )

    url = _page(site)
    site.routes["/slow.jpg"] = slow_once
    site.routes["/"] = ("text/html", b'<img src="/p.jpg"><img src="/slow.jpg">')
    env = _env(hotline_env, HOTLINE_REDIS_URL=redis_url)
    r = run_hotline("submit", url, "--json", env=env)
    report_id = json.loads(r.stdout)["report_id"]
    before = chromium_pids()
    worker = _worker(env)
    try:
        _wait(lambda: first["hit"], 60, "the scan to reach the slow image")
        horses = _scanning_horses(worker.pid)
        assert len(horses) == 1, "no work horse found"
        os.kill(horses[0], signal.SIGKILL)
        store = Store(Settings.from_env().database_url)
        _wait(lambda: store.get_report(report_id)["state"] == "done", 90, "the retried scan")
        report = store.get_report(report_id)
        assert len(report["scans"]) == 1
        assert len(report["scans"][0]["images"]) == 2
    finally:
        _stop(worker)
    # The retry's scan reaped the killed scan's browser; none is left.
    _wait(lambda: not (chromium_pids() - before), 10, "no leftover Chromium")


@pytest.mark.browser
@pytest.mark.timeout(360)  # about 100 s here; a slower machine must not fail it on time alone
def test_hundred_scans_with_killed_work_horses_leave_no_browser(
    site: Site, hotline_env, redis_url, monkeypatch: pytest.MonkeyPatch
) -> None:
    """100 reports through two workers while three work horses are killed mid-scan:
    every report is scanned exactly once, and no Chromium process or scan directory
    outlives the run."""
    url = _page(site)
    env = _env(hotline_env, HOTLINE_REDIS_URL=redis_url)
    monkeypatch.setenv("HOTLINE_REDIS_URL", redis_url)
    settings = Settings.from_env()
    store = Store(settings.database_url)
    store.migrate()
    conn = connect(settings)
    ids = [store.add_report(f"{url}?n={n}", "test") for n in range(100)]
    for report_id in ids:
        enqueue_scan(conn, settings, report_id)
    before = chromium_pids()
    workers = [_worker(env), _worker(env)]

    def done() -> int:
        return sum(store.get_report(i)["state"] == "done" for i in ids)

    def kill_a_horse() -> bool:
        for pid in (p for w in workers for p in _scanning_horses(w.pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                return True
        return False

    try:
        for kill in range(3):
            _wait(lambda k=kill: done() >= 20 * (k + 1), 120, f"{20 * (kill + 1)} scans")
            _wait(kill_a_horse, 30, "a work horse mid-scan to kill")
        _wait(lambda: done() == len(ids), 240, "all 100 reports scanned")
    finally:
        for w in workers:
            _stop(w)
    assert all(len(store.get_report(i)["scans"]) == 1 for i in ids)
    _wait(lambda: not (chromium_pids() - before), 10, "no leftover Chromium")
    assert list(scans_root(settings.home).glob("scan-*")) == []


def _scanning_horses(worker_pid: int) -> list[int]:
    """A worker's work horses whose scan has its browser running: Python children that
    have children of their own (RQ's scheduler, the worker's other child, has none)."""
    children = child_pids()
    return [pid for pid in children.get(worker_pid, []) if children.get(pid) and _is_python(pid)]


def _is_python(pid: int) -> bool:
    try:
        return b"python" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False


@pytest.mark.browser
def test_up_survives_its_redis_dying_under_load(site: Site, hotline_env, tmp_path) -> None:
    url = _page(site)
    env = _env(hotline_env, HOTLINE_SWEEP_INTERVAL="1s", HOTLINE_SCAN_TIMEOUT="10s")
    log = tmp_path / "up.log"
    with log.open("w") as out:
        up = subprocess.Popen(
            [sys.executable, "-m", "hotline", "up", "--workers", "2"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait(lambda: "hotline is up" in log.read_text(), 30, "hotline up to start")
        ids = _submit(url, 6, env)
        settings = Settings.from_env()
        store = Store(settings.database_url)
        _wait(lambda: any(store.get_report(i)["state"] != "queued" for i in ids), 60, "a scan")
        redis_pid = _pid_of(str(settings.redis_socket))
        os.kill(redis_pid, signal.SIGKILL)  # Redis dies and comes back empty
        _wait(lambda: all(store.get_report(i)["state"] == "done" for i in ids), 150, "all reports")
        for i in ids:
            assert len(store.get_report(i)["scans"]) == 1, f"report {i} scanned twice"
        assert "the private Redis died; starting it again" in log.read_text()
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(60)
    assert up.returncode == 0


def _pid_of(needle: str) -> int:
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if needle.encode() in (d / "cmdline").read_bytes():
                    return int(d.name)
            except OSError:
                continue
    raise AssertionError(f"no process with {needle} in its command line")


# --- PostgreSQL: a private cluster the test may restart, and the shared one ----------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def private_postgres() -> Iterator[Callable[[], None]]:
    """A throwaway PostgreSQL cluster on a free port; yields a function that restarts it."""
    bindir = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not installed (/usr/lib/postgresql/*/bin)")
    # Not under pytest's tmp_path: the postgres user must be able to reach it.
    tmp_path = Path(tempfile.mkdtemp(prefix="hotline-pg-"))
    data = tmp_path / "pg"
    data.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(tmp_path, "postgres")
        shutil.chown(data, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()

    def pg(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, timeout=60)

    pg(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
    ctl = [
        str(bindir / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(tmp_path / "pg.log"),
        "-w",
        "-o",
        f"-p {port} -k {tmp_path} -c listen_addresses=127.0.0.1",
    ]
    pg(*ctl, "start")
    os.environ["HOTLINE_DATABASE_URL"] = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    try:
        yield lambda: pg(*ctl, "-m", "immediate", "restart")
    finally:
        pg(*ctl, "-m", "immediate", "stop")
        del os.environ["HOTLINE_DATABASE_URL"]
        shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.mark.browser
@pytest.mark.postgres
def test_postgres_restart_under_load_loses_nothing(
    site: Site, hotline_env, redis_url, private_postgres
) -> None:
    url = _page(site)
    env = _env(
        hotline_env,
        HOTLINE_REDIS_URL=redis_url,
        HOTLINE_DATABASE_URL=os.environ["HOTLINE_DATABASE_URL"],
    )
    ids = _submit(url, 5, env)
    worker = _worker(env)
    store = Store(env["HOTLINE_DATABASE_URL"])
    try:
        _wait(lambda: any(store.get_report(i)["state"] != "queued" for i in ids), 60, "a scan")
        private_postgres()  # every connection dropped mid-work
        settings = Settings.from_env().with_redis(redis_url)
        conn = connect(settings)

        def all_done() -> bool:
            try:
                sweep_jobs(Store(env["HOTLINE_DATABASE_URL"]), conn, settings)
                return all(store.get_report(i)["state"] == "done" for i in ids)
            except sa.exc.OperationalError:
                return False

        _wait(all_done, 150, "all reports after the restart")
        assert all(len(store.get_report(i)["scans"]) == 1 for i in ids)
    finally:
        _stop(worker)


def _postgres_schema_url() -> str:
    """A fresh schema on the shared PostgreSQL, as the URL workers on other hosts would use."""
    engine = sa.create_engine(POSTGRES_URL)
    schema = f"t_{uuid.uuid4().hex[:10]}"
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    except sa.exc.OperationalError as e:
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {str(e).splitlines()[0]}")
    finally:
        engine.dispose()
    return f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"


@pytest.mark.browser
@pytest.mark.postgres
@pytest.mark.timeout(300)  # about 12 s, but twice in a dozen runs here 71-73 s
def test_workers_on_separate_homes_share_redis_and_postgres(
    site: Site, tmp_path: Path, hotline_env, redis_url
) -> None:
    url = _page(site)
    db = _postgres_schema_url()
    shared = _env(hotline_env, HOTLINE_REDIS_URL=redis_url, HOTLINE_DATABASE_URL=db)
    ids = _submit(url, 6, shared)
    machines = [
        _worker(shared | {"HOTLINE_HOME": str(tmp_path / f"machine-{m}")}, "--burst")
        for m in range(2)
    ]
    for p in machines:
        assert p.wait(240) == 0
    store = Store(db)
    assert all(store.get_report(i)["state"] == "done" for i in ids)
    assert all(len(store.get_report(i)["scans"]) == 1 for i in ids)
    conn = redis.Redis.from_url(redis_url)
    workers = {Job.fetch(f"scan-{i}", connection=conn).worker_name for i in ids}
    assert len(workers) == 2, "both machines should have taken work"
    with sa.create_engine(db).begin() as c:
        c.execute(sa.text("DROP SCHEMA " + db.rsplit("%3D", 1)[1] + " CASCADE"))
