"""Queue names, the Redis connection and enqueueing: the one place jobs enter RQ."""

from __future__ import annotations

import contextlib
import hashlib
import uuid

import redis
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job
from rq.registry import StartedJobRegistry

from hotline.config import Settings

# Queues in priority order: a worker always takes intake scans before the rest, so
# retro-matching and takedown rechecks never starve new reports.
INTAKE = "intake"
RETRO = "retro"
RECHECK = "recheck"
QUEUES = (INTAKE, RETRO, RECHECK)
RETRY = Retry(max=3, interval=[10, 60, 300])


def connect(settings: Settings) -> redis.Redis:
    """Redis from HOTLINE_REDIS_URL, else the private one under HOTLINE_HOME."""
    url = settings.redis_url or f"unix://{settings.redis_socket}"
    return redis.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)


def retro_job_prefix(list_name: str) -> str:
    """Start of the ids of a list's retro jobs (list names may hold any character)."""
    return f"retro-{hashlib.sha256(list_name.encode()).hexdigest()[:16]}-"


def enqueue_retro(
    conn: redis.Redis, settings: Settings, list_name: str, *, unless_running: bool = False
) -> str:
    """Queue retro-matching of a list's new entries, unless a job for the list is still
    waiting (it will see them all when it starts); with ``unless_running``, also unless
    one is running (the sweeper's catch-up: the entries it sees pending may be that
    job's). Returns the job id."""
    queue = Queue(RETRO, connection=conn)
    prefix = retro_job_prefix(list_name)
    waiting = queue.get_job_ids()
    if unless_running:
        waiting += StartedJobRegistry(queue=queue).get_job_ids()
    for job_id in waiting:
        if job_id.startswith(prefix):
            return job_id
    job = queue.enqueue(
        "workers.jobs.retro_match",
        list_name,
        job_id=prefix + uuid.uuid4().hex[:12],
        job_timeout=int(settings.retro_timeout),
        result_ttl=86400,
        failure_ttl=30 * 86400,
        retry=RETRY,
        description=f"retro-match list {list_name!r}",
    )
    return job.id


def scan_job_id(report_id: int) -> str:
    return f"scan-{report_id}"


def enqueue_scan(conn: redis.Redis, settings: Settings, report_id: int) -> str:
    """Queue a scan of a stored report, at most once: while a job for the report exists
    (queued, running, retrying or failed), enqueueing again is a no-op."""
    job_id = scan_job_id(report_id)
    with contextlib.suppress(DuplicateJobError):
        Queue(INTAKE, connection=conn).enqueue(
            "workers.jobs.scan_report",
            report_id,
            job_id=job_id,
            unique=True,
            job_timeout=int(settings.job_timeout),
            result_ttl=86400,
            failure_ttl=30 * 86400,
            retry=RETRY,
            description=f"scan report {report_id}",
        )
    return job_id


def rescan(conn: redis.Redis, settings: Settings, report_id: int) -> str:
    """Queue a report again even though a job exists (an operator's retry)."""
    with contextlib.suppress(NoSuchJobError):
        Job.fetch(scan_job_id(report_id), connection=conn).delete()
    return enqueue_scan(conn, settings, report_id)


def enqueue_rechecks(
    conn: redis.Redis,
    batches: list[list[str]],
    job_timeout: float,
    pipeline: redis.client.Pipeline | None = None,
) -> None:
    """Queue takedown checks, one job per batch of scheduler members; with ``pipeline``
    the jobs enter Redis together with the scheduler's claim on them."""
    Queue(RECHECK, connection=conn).enqueue_many(
        [
            Queue.prepare_data(
                "workers.jobs.recheck",
                (batch,),
                timeout=int(job_timeout),
                result_ttl=3600,
                failure_ttl=7 * 86400,
                description=f"check {len(batch)} referred URL(s)",
            )
            for batch in batches
        ],
        pipeline=pipeline,
    )


def enqueue_webhook(conn: redis.Redis, settings: Settings, event_id: int) -> None:
    """Queue a takedown notification ahead of the checks waiting on the same queue; failed
    deliveries are retried with the configured backoff."""
    retries = settings.takedown.webhook_retries
    with contextlib.suppress(DuplicateJobError):
        Queue(RECHECK, connection=conn).enqueue(
            "workers.jobs.deliver_webhook",
            event_id,
            job_id=f"webhook-{event_id}",
            unique=True,
            at_front=True,
            job_timeout=120,
            result_ttl=86400,
            failure_ttl=30 * 86400,
            retry=Retry(max=len(retries), interval=[int(max(1, s)) for s in retries]),
            description=f"deliver takedown event {event_id}",
        )
