"""Notifications of removed, reappeared and overdue referrals to the operator's URLs.

Events are written with the state change that raised them (an outbox), then delivered by
their own RQ job, so a slow or failing receiver never holds up a check. Each POST carries
``X-Hotline-Signature: sha256=<hex HMAC-SHA256 of the body under HOTLINE_WEBHOOK_SECRET>``.
The URLs are the operator's own configuration, not reported input: they are called
directly, not through the scan egress guard (which would refuse an internal receiver).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import aiohttp
import redis

from hotline.config import Settings
from store import Store
from workers.queues import enqueue_webhook

TIMEOUT = 10.0
# Undelivered events younger than this are queued again when the service starts.
REQUEUE_WINDOW = timedelta(days=7)


class DeliveryFailed(RuntimeError):
    """Some receivers did not take the event; RQ retries the job with backoff."""


def sign(secret: str, body: bytes) -> str:
    """The X-Hotline-Signature value: receivers compute the same and compare."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def enqueue(conn: redis.Redis, settings: Settings, event_ids: list[int]) -> None:
    if settings.takedown.webhook_urls:
        for event_id in event_ids:
            enqueue_webhook(conn, settings, event_id)


def requeue_undelivered(store: Store, conn: redis.Redis, settings: Settings) -> None:
    """Queue events whose job Redis lost (a stopped service, a restarted private Redis);
    events with a job, even a failed one, are left alone."""
    if settings.takedown.webhook_urls:
        since = datetime.now(UTC) - REQUEUE_WINDOW
        enqueue(conn, settings, store.undelivered_events(since=since))


def deliver(store: Store, settings: Settings, event_id: int) -> list[str]:
    """POST the event to every configured URL that has not taken it yet; returns the URLs
    that have it now. Raises DeliveryFailed while any still refuse."""
    event = store.takedown_event(event_id)
    if event is None:
        return []
    done = list(event.pop("delivered_to"))
    pending = [url for url in settings.takedown.webhook_urls if url not in done]
    body = json.dumps(event, sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "hotline-scanner webhook",
        "X-Hotline-Event": event["event"],
        "X-Hotline-Delivery": str(event_id),
        "X-Hotline-Signature": sign(settings.takedown.webhook_secret or "", body),
    }
    errors = asyncio.run(_post_all(pending, body, headers))
    done += [url for url in pending if url not in errors]
    store.mark_delivered(event_id, done, complete=not errors)
    if errors:
        raise DeliveryFailed(
            "; ".join(f"{url}: {why}" for url, why in errors.items())
            + " (retried with backoff; check the receiver and HOTLINE_WEBHOOK_URL)"
        )
    return done


async def _post_all(urls: list[str], body: bytes, headers: dict[str, str]) -> dict[str, str]:
    """Errors by URL for the POSTs that failed."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session:
        results = await asyncio.gather(*(_post(session, u, body, headers) for u in urls))
    return {url: error for url, error in zip(urls, results, strict=True) if error}


async def _post(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> str | None:
    try:
        async with session.post(url, data=body, headers=headers, allow_redirects=False) as resp:
            if 200 <= resp.status < 300:
                return None
            return f"answered HTTP {resp.status}"
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
