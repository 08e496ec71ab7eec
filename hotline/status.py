"""``hotline status``: what an operator checks first. Each part is gathered on its own,
so an unreachable database or Redis shows as such instead of hiding the rest."""

from __future__ import annotations

from typing import Any

import redis
from rq import Queue, Worker
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from sqlalchemy.exc import SQLAlchemyError

from store import Store
from workers import QUEUES, connect

from .config import Settings


def gather(settings: Settings) -> dict[str, Any]:
    status: dict[str, Any] = {"ok": True}
    try:
        store = Store(settings.database_url)
        store.ping()
        status["database"] = {
            "reachable": True,
            "reports": {
                s: len(store.reports_in_state(s)) for s in ("queued", "scanning", "failed")
            },
            "lists_version": store.lists_version(),
        }
    except (SQLAlchemyError, OSError) as e:
        status["ok"] = False
        status["database"] = {"reachable": False, "error": str(e).splitlines()[0]}
    try:
        conn = connect(settings)
        conn.ping()
        status["redis"] = {"reachable": True}
        status["queues"] = {
            name: {
                "queued": q.count,
                "running": StartedJobRegistry(queue=q).count,
                "retrying": ScheduledJobRegistry(queue=q).count,
                "failed": FailedJobRegistry(queue=q).count,
            }
            for name in QUEUES
            for q in [Queue(name, connection=conn)]
        }
        status["workers"] = [
            {
                "name": w.name,
                "host": w.hostname,
                "pid": w.pid,
                "state": w.get_state(),
                "queues": w.queue_names(),
                "job": w.get_current_job_id(),
            }
            for w in Worker.all(connection=conn)
        ]
    except (redis.RedisError, OSError) as e:
        status["ok"] = False
        status["redis"] = {"reachable": False, "error": str(e).splitlines()[0]}
    return status


def render(status: dict[str, Any]) -> str:
    lines = []
    db = status["database"]
    if db["reachable"]:
        counts = ", ".join(f"{n} {s}" for s, n in db["reports"].items())
        lines.append(f"database  reachable; reports: {counts}; lists version {db['lists_version']}")
    else:
        lines.append(f"database  UNREACHABLE: {db['error']}")
    rd = status["redis"]
    lines.append(
        "redis     reachable" if rd["reachable"] else f"redis     UNREACHABLE: {rd['error']}"
    )
    for name, q in status.get("queues", {}).items():
        lines.append(
            f"queue     {name:<8} {q['queued']} queued, {q['running']} running, "
            f"{q['retrying']} waiting to retry, {q['failed']} failed"
        )
    workers = status.get("workers", [])
    lines.append(f"workers   {len(workers)}")
    for w in workers:
        job = f", on {w['job']}" if w["job"] else ""
        lines.append(f"  {w['name']} ({w['host']} pid {w['pid']}) {w['state']}{job}")
    return "\n".join(lines)
