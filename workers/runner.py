"""Worker start-up: reclaim what dead scans left behind, then run RQ."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from rq import Queue, Worker
from rq.job import Job

from hotline.config import Settings
from hotline.matching import current_index
from scanner import scans_root, sweep
from store import Store

from .queues import QUEUES, connect

log = logging.getLogger(__name__)


class _IndexedWorker(Worker):
    """An RQ worker that brings the match index up to date before it forks each job.

    After a big list change the index takes a while to build (about a minute at 10M
    entries): done here, that belongs to no job's time limit, and the work horse
    inherits the mapped index instead of building or loading it."""

    def __init__(self, *args: Any, settings: Settings, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._settings = settings
        self._store = Store(settings.database_url)

    def execute_job(self, job: Job, queue: Queue) -> None:
        try:
            current_index(self._settings, self._store)
        except Exception as e:  # the job meets the same outage and fails, or retries, visibly
            log.warning("match index not refreshed before job %s: %s", job.id, e)
        super().execute_job(job, queue)


def run_worker(settings: Settings, *, queues: Sequence[str] = QUEUES, burst: bool = False) -> bool:
    """Process jobs from ``queues`` (highest priority first) until stopped, or with
    ``burst`` until they are empty."""
    reclaimed = sweep(scans_root(settings.home))
    if reclaimed:
        log.warning("removed %d scan directories left by killed scans", reclaimed)
    conn = connect(settings)
    worker = _IndexedWorker(
        [Queue(q, connection=conn) for q in queues], connection=conn, settings=settings
    )
    return worker.work(burst=burst, logging_level="INFO", with_scheduler=True)
