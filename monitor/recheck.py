"""One batch of due checks, as an RQ job runs it: check, record, reschedule, notify.

Checks of one host wait for each other (at most ``per_host`` at once, starts at least
``host_interval`` apart); checks of different hosts run side by side, with few browsers.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import redis

from hotline.config import Settings
from store import Store

from . import schedule, webhooks
from .check import Evidence, check
from .lifecycle import Progress, advance

log = logging.getLogger(__name__)

_PROGRESS_FIELDS = [f.name for f in dataclasses.fields(Progress)]


class Politeness:
    """Per-host limits on concurrent checks and on how soon one may follow another."""

    def __init__(self, per_host: int, interval: float) -> None:
        self.interval = interval
        self._slots: dict[str, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(per_host))
        self._next_start: dict[str, float] = {}

    @contextlib.asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        async with self._slots[host]:
            now = asyncio.get_running_loop().time()
            start = max(now, self._next_start.get(host, now))
            self._next_start[host] = start + self.interval
            await asyncio.sleep(start - now)
            yield


async def run_batch(
    store: Store, conn: redis.Redis, settings: Settings, members: list[str]
) -> dict[str, int]:
    """Check the referrals named by scheduler members; returns counts by verdict."""
    parsed = dict(schedule.parse_member(m) for m in members)
    rows = await asyncio.to_thread(store.takedowns_to_check, list(parsed))
    for gone in parsed.keys() - {row["id"] for row in rows}:  # deleted since: stop checking
        schedule.set_next(conn, gone, parsed[gone], None)
    policy = settings.takedown
    polite = Politeness(policy.per_host, policy.host_interval)
    browsers = asyncio.Semaphore(schedule.BROWSERS)
    spacing = timedelta(seconds=policy.confirm_spacing)

    async def one(row: dict) -> str:
        progress = Progress(**{name: row[name] for name in _PROGRESS_FIELDS})
        async with polite.slot(row["host"]):
            at = datetime.now(UTC)
            pending = progress.pending_since
            # A negative answer now would confirm the removal: make sure of it.
            confirming = pending is not None and at - pending >= spacing
            verdict, detail = await check(
                row["url"],
                Evidence.from_json(row["evidence"]),
                settings,
                confirming=confirming,
                browsers=browsers,
            )
        after, events = advance(progress, verdict, at, policy)
        event_ids = await asyncio.to_thread(
            store.record_check, row["id"], at, verdict, detail, after.as_dict(), events
        )
        schedule.set_next(conn, row["id"], row["host"], after.next_check_at)
        webhooks.enqueue(conn, settings, event_ids)
        if events:
            log.info("referral %s (report %s): %s", row["id"], row["report_id"], ", ".join(events))
        return verdict

    try:
        results = await asyncio.gather(*(one(row) for row in rows), return_exceptions=True)
    finally:
        schedule.release(conn, set(parsed.values()))
    for row, result in zip(rows, results, strict=True):
        if isinstance(result, BaseException):
            # Its member stays claimed until the lease ends, then it comes due again.
            log.error("check of referral %s failed: %r", row["id"], result)
    return dict(Counter(r if isinstance(r, str) else "error" for r in results))
