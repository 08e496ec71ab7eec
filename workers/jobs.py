"""RQ job functions. Each re-reads settings and opens its own store: RQ runs every job
in a fresh fork, and nothing but the report id travels through Redis."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from hotline import intake
from hotline.config import Settings
from store import Store

log = logging.getLogger(__name__)


def scan_report(report_id: int) -> dict[str, Any]:
    """Scan a stored report and save the result; idempotent for reports already done."""
    settings = Settings.from_env()
    store = Store(settings.database_url)
    report = store.get_report(report_id)
    if report["state"] in ("done", "failed"):
        return {"report_id": report_id, "skipped": f"already {report['state']}"}
    store.set_report_state(report_id, "scanning", bump_attempts=True)
    doc = asyncio.run(intake.scan(report["url"], settings, intake.load_index(store)))
    scan_id = store.save_scan(report_id, doc)
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
