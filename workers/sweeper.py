"""Nothing lost: reconcile the database (the truth about reports) with Redis (the queue).

A report is committed before it is queued, so whatever happens to Redis or to a
worker, the sweeper can put every waiting report back: a job that Redis lost is
enqueued again, a job whose worker died mid-scan is retried, a job that used up its
retries marks its report failed, visibly, for an operator to retry.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis
from rq import Queue, Worker
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

from hotline.config import Settings
from store import Store

from .queues import QUEUES, enqueue_retro, enqueue_scan, scan_job_id

log = logging.getLogger(__name__)


@dataclass
class SweepResult:
    requeued: int = 0
    failed: int = 0
    dead_workers: int = 0

    def __bool__(self) -> bool:
        return bool(self.requeued or self.failed or self.dead_workers)


def sweep_jobs(store: Store, conn: redis.Redis, settings: Settings) -> SweepResult:
    result = SweepResult(dead_workers=_retry_dead_local_workers(conn))
    for name in QUEUES:
        # Retries jobs whose worker stopped sending heartbeats (any host).
        StartedJobRegistry(queue=Queue(name, connection=conn)).cleanup()
    # A report in "scanning" may still be scanned by a live worker that Redis forgot
    # (Redis restarted empty): only once its lease, the job timeout, has run out is it
    # certainly abandoned. Queued reports go back at once.
    lease = datetime.now(UTC) - timedelta(seconds=settings.job_timeout)
    waiting = store.reports_in_state("queued") + store.reports_in_state(
        "scanning", older_than=lease
    )
    for report_id in waiting:
        try:
            status = Job.fetch(scan_job_id(report_id), connection=conn).get_status()
        except NoSuchJobError:
            enqueue_scan(conn, settings, report_id)
            result.requeued += 1
            continue
        if status in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
            store.set_report_state(report_id, "failed")
            result.failed += 1
    # Entries still waiting for retro-matching whose job Redis lost.
    for list_name in store.lists_pending_retro():
        enqueue_retro(conn, settings, list_name, unless_running=True)
    if result:
        log.warning(
            "sweep: %d report(s) re-queued, %d failed after retries, %d dead worker(s)",
            result.requeued,
            result.failed,
            result.dead_workers,
        )
    return result


def _retry_dead_local_workers(conn: redis.Redis) -> int:
    """Workers of this host whose process is gone: retry their job now instead of after
    the heartbeat expires; dead workers elsewhere are found by that expiry."""
    host = socket.gethostname()
    dead = 0
    for worker in Worker.all(connection=conn):
        if worker.hostname != host or not worker.pid or _alive(worker.pid):
            continue
        job_id = worker.get_current_job_id()
        worker.register_death()
        dead += 1
        if not job_id:
            continue
        for queue in worker.queues:
            registry = StartedJobRegistry(queue=queue)
            members = [
                m for m in conn.zrange(registry.key, 0, -1) if m.decode().startswith(f"{job_id}:")
            ]
            if members:
                conn.zadd(registry.key, dict.fromkeys(members, 0), xx=True)
                registry.cleanup()
    return dead


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
