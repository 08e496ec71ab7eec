"""Worker start-up: reclaim what dead scans left behind, then run RQ."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from rq import Queue, Worker

from hotline.config import Settings
from scanner import scans_root, sweep

from .queues import QUEUES, connect

log = logging.getLogger(__name__)


def run_worker(settings: Settings, *, queues: Sequence[str] = QUEUES, burst: bool = False) -> bool:
    """Process jobs from ``queues`` (highest priority first) until stopped, or with
    ``burst`` until they are empty."""
    reclaimed = sweep(scans_root(settings.home))
    if reclaimed:
        log.warning("removed %d scan directories left by killed scans", reclaimed)
    conn = connect(settings)
    worker = Worker([Queue(q, connection=conn) for q in queues], connection=conn)
    return worker.work(burst=burst, logging_level="INFO", with_scheduler=True)
