"""Referring a report: record who was told, and what evidence the checks look for."""

from __future__ import annotations

import urllib.parse
from datetime import UTC, datetime

from hotline.config import Settings
from store import Store

from . import lifecycle
from .check import Evidence


class NotScanned(ValueError):
    """A report without any scan has no evidence to look for yet."""


def refer(
    store: Store,
    report_id: int,
    party: str,
    notice_sent_at: datetime | None = None,
    *,
    settings: Settings | None = None,
) -> dict:
    """Refer a report to ``party`` and start re-checking its URL; returns the takedown.

    The evidence is the matched images of the report's latest scan that saw images (all
    of its images when none matched). Referring an already referred report records the
    new party and notice time and keeps its checks. The scheduler picks the referral up
    from the database, so this needs no Redis. Raises ReportNotFound, NotScanned, or
    ValueError for an empty party or a naive notice time.
    """
    party = party.strip()
    if not party:
        raise ValueError("say who the report is referred to (a hosting provider, hotline, …)")
    if notice_sent_at is not None and notice_sent_at.tzinfo is None:
        raise ValueError("notice_sent_at needs a time zone (e.g. 2026-12-05T09:30:00+00:00)")
    settings = settings or Settings.from_env()
    report = store.get_report(report_id)
    if not report["scans"]:
        raise NotScanned(
            f"report {report_id} has not been scanned yet, so there is no evidence to "
            f"re-check: wait for its scan (`hotline report {report_id}`), then refer it"
        )
    scan = next((s for s in reversed(report["scans"]) if s["images"]), report["scans"][-1])
    now = datetime.now(UTC)
    progress = lifecycle.start(now, notice_sent_at, settings.takedown)
    store.save_referral(
        report_id,
        {
            "party": party,
            "host": (urllib.parse.urlsplit(report["url"]).hostname or "").lower(),
            "server_ip": scan["server_ip"],
            "evidence": Evidence.from_scan(scan).as_json(),
            **progress.as_dict(),
        },
    )
    takedown = store.get_takedown(report_id)
    assert takedown is not None
    return takedown
