"""Queue names, the Redis connection and enqueueing: the one place jobs enter RQ."""

from __future__ import annotations

import redis
from rq import Queue, Retry

from hotline.config import Settings

INTAKE = "intake"
RETRY = Retry(max=3, interval=[10, 60, 300])


def connect(settings: Settings) -> redis.Redis:
    """Redis from HOTLINE_REDIS_URL, else the private one under HOTLINE_HOME."""
    url = settings.redis_url or f"unix://{settings.redis_socket}"
    return redis.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)


def enqueue_scan(conn: redis.Redis, settings: Settings, report_id: int) -> str:
    """Queue a scan of a stored report; the job id is stable, so a re-enqueue is harmless."""
    job = Queue(INTAKE, connection=conn).enqueue(
        "workers.jobs.scan_report",
        report_id,
        job_id=f"scan-{report_id}",
        job_timeout=int(settings.job_timeout),
        result_ttl=86400,
        failure_ttl=7 * 86400,
        retry=RETRY,
        description=f"scan report {report_id}",
    )
    return job.id
