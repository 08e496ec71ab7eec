"""Worker start-up: reclaim what dead scans left behind, then run RQ."""

from __future__ import annotations

import logging

from rq import Queue, Worker

from hotline.config import Settings
from scanner import scans_root, sweep

from .queues import INTAKE, connect

log = logging.getLogger(__name__)


def run_worker(settings: Settings, *, burst: bool = False) -> bool:
    """Process intake jobs until stopped (or, with ``burst``, until the queue is empty)."""
    reclaimed = sweep(scans_root(settings.home))
    if reclaimed:
        log.warning("removed %d scan directories left by killed scans", reclaimed)
    conn = connect(settings)
    worker = Worker([Queue(INTAKE, connection=conn)], connection=conn)
    return worker.work(burst=burst, logging_level="INFO", with_scheduler=True)
