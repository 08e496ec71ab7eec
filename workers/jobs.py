"""RQ job functions. Each re-reads settings and opens its own store: RQ runs every job
in a fresh fork, and nothing but the report id travels through Redis."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import monitor
from hotline import intake, matching
from hotline.config import Settings
from monitor import webhooks
from store import ListNotFound, Store

from .queues import connect

log = logging.getLogger(__name__)


def scan_report(report_id: int) -> dict[str, Any]:
    """Scan a stored report and save the result; idempotent for reports already done."""
    settings = Settings.from_env()
    store = Store(settings.database_url)
    report = store.get_report(report_id)
    if report["state"] in ("done", "failed"):
        return {"report_id": report_id, "skipped": f"already {report['state']}"}
    store.set_report_state(report_id, "scanning", bump_attempts=True)
    index = matching.current_index(settings, store)
    doc = asyncio.run(intake.scan(report["url"], settings, index))
    scan_id = store.save_scan(report_id, doc)
    matching.catch_up(settings, store, scan_id, index)
    store.set_report_state(report_id, "done" if doc["status"] == "completed" else "failed")
    log.info(
        "report %s: scan %s %s, %d images, matched=%s",
        report_id,
        scan_id,
        doc["status"],
        len(doc["images"]),
        doc["matched"],
    )
    return {"report_id": report_id, "scan_id": scan_id, "status": doc["status"]}


def retro_match(list_name: str) -> dict[str, Any]:
    """Match the stored images against a list's new entries (hotline.matching)."""
    settings = Settings.from_env()
    try:
        return matching.retro_match(settings, Store(settings.database_url), list_name)
    except ListNotFound:
        return {"list": list_name, "skipped": "the list was deleted"}


def recheck(members: list[str]) -> dict[str, int]:
    """Check a batch of referrals the scheduler found due; returns counts by verdict."""
    settings = Settings.from_env()
    store = Store(settings.database_url)
    return asyncio.run(monitor.run_batch(store, connect(settings), settings, members))


def deliver_webhook(event_id: int) -> list[str]:
    """Send one takedown notification; raises (so RQ retries) while a receiver refuses."""
    settings = Settings.from_env()
    return webhooks.deliver(Store(settings.database_url), settings, event_id)
