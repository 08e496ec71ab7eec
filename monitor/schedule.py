"""Which referrals are due, and handing them to RQ with per-host politeness.

Every scheduled referral is one member of a Redis sorted set scored by its next check
time (member ``"<id>|<host>"``: about 100 bytes each, not one RQ job per URL). Each tick
the scheduler takes what is due, groups it by host, puts off a little the checks of hosts
that a running job still holds, and enqueues batches on the "recheck" queue. Claimed
members are not removed but
re-scored to the end of their lease: a job that dies loses nothing, its checks simply
come due again. The database's next_check_at is the source of truth; ``sync`` copies new
referrals (and, into an empty Redis, all of them) into the set.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from datetime import datetime

import redis
from rq import Queue
from sqlalchemy.exc import SQLAlchemyError

from hotline.config import Settings
from store import Store
from workers.queues import RECHECK, enqueue_rechecks

from . import webhooks

log = logging.getLogger(__name__)

DUE = "hotline:recheck:due"  # member "<takedown id>|<host>" → next check (unix time)
BUSY = "hotline:recheck:busy"  # host → end of the lease of the job that holds it
SYNCED = "hotline:recheck:synced"  # highest takedown id copied from the database
LOCK = "hotline:recheck:lock"  # one scheduler at a time
BATCH = 50  # checks per job
SCAN = 20_000  # due members looked at per tick
MAX_WAITING = 100  # jobs waiting in the queue before the scheduler holds back
# Ids below the watermark that each sync reads again: PostgreSQL may commit a referral
# after one with a higher id, and adding a member again is harmless (ZADD NX).
OVERLAP = 500
BROWSERS = 2  # concurrent browser visits per job (sizes the job timeout)
OUTBOX_INTERVAL = 300.0  # seconds between looks for undelivered notifications


def member(takedown_id: int, host: str) -> str:
    return f"{takedown_id}|{host}"


def parse_member(value: bytes | str) -> tuple[int, str]:
    text = value.decode() if isinstance(value, bytes) else value
    takedown_id, _, host = text.partition("|")
    return int(takedown_id), host


def set_next(conn: redis.Redis, takedown_id: int, host: str, when: datetime | None) -> None:
    """Put a referral's next check in the due set, or take it out when monitoring ends."""
    if when is None:
        conn.zrem(DUE, member(takedown_id, host))
    else:
        conn.zadd(DUE, {member(takedown_id, host): when.timestamp()})


def release(conn: redis.Redis, hosts: set[str]) -> None:
    """A job is done with these hosts: the scheduler may hand them out again."""
    if hosts:
        conn.zrem(BUSY, *hosts)


def job_timeout(settings: Settings) -> float:
    """Enough for a batch whose checks all need the browser, a few at a time."""
    return settings.job_timeout * math.ceil(BATCH / BROWSERS)


class Scheduler:
    """Moves due checks from the sorted set into RQ jobs."""

    def __init__(
        self,
        store: Store,
        conn: redis.Redis,
        settings: Settings,
        *,
        batch: int = BATCH,
        scan: int = SCAN,
        max_waiting: int | None = MAX_WAITING,
    ) -> None:
        self.store = store
        self.conn = conn
        self.settings = settings
        self.batch = batch
        self.scan = scan
        self.max_waiting = max_waiting
        self.queue = Queue(RECHECK, connection=conn)
        self.lease = job_timeout(settings) + 60
        # How long a busy host's other due checks wait: about one full job's worth.
        self.defer = max(1.0, batch * settings.takedown.host_interval)

    def sync(self, chunk: int = 10_000) -> int:
        """Copy referrals the set has not seen yet; returns how many were added."""
        after = max(0, int(self.conn.get(SYNCED) or 0) - OVERLAP)
        added = 0
        while rows := self.store.takedowns_after(after, chunk):
            due = {member(i, host): when.timestamp() for i, host, when in rows if when}
            pipe = self.conn.pipeline()
            if due:
                pipe.zadd(DUE, due, nx=True)
            pipe.set(SYNCED, rows[-1][0])
            added += pipe.execute()[0] if due else 0
            after = rows[-1][0]
        return added

    def tick(self, now: float | None = None) -> int:
        """Enqueue what is due now; returns the number of checks handed out."""
        now = time.time() if now is None else now
        token = secrets.token_hex(8)
        if not self.conn.set(LOCK, token, nx=True, ex=60):
            return 0
        try:
            return self._dispatch(now)
        finally:
            if self.conn.get(LOCK) == token.encode():
                self.conn.delete(LOCK)

    def _dispatch(self, now: float) -> int:
        room = None
        if self.max_waiting is not None:
            room = self.max_waiting - self.queue.count
            if room <= 0:
                return 0
        self.conn.zremrangebyscore(BUSY, "-inf", now)
        busy = {h.decode() for h in self.conn.zrange(BUSY, 0, -1)}
        by_host: dict[str, list[bytes]] = {}
        deferred: list[bytes] = []
        window = self.conn.zrangebyscore(DUE, "-inf", now, start=0, num=self.scan)
        for value in window:
            host = parse_member(value)[1]
            mine = None if host in busy else by_host.setdefault(host, [])
            if mine is not None and len(mine) < self.batch:
                mine.append(value)
            else:
                deferred.append(value)
        batches = self._pack(by_host)[:room]
        pipe = self.conn.pipeline()
        if deferred and len(window) == self.scan:
            # More is due than one pass reads: a busy host's backlog waits its turn out
            # of the way, so it never crowds other hosts' due checks out of the window.
            pipe.zadd(DUE, dict.fromkeys(deferred, now + self.defer), xx=True)
        until = now + self.lease
        for batch in batches:
            pipe.zadd(DUE, dict.fromkeys(batch, until), xx=True)
            pipe.zadd(BUSY, {parse_member(m)[1]: until for m in batch})
        if batches:
            enqueue_rechecks(
                self.conn,
                [[m.decode() for m in batch] for batch in batches],
                job_timeout(self.settings),
                pipeline=pipe,
            )
        pipe.execute()
        return sum(map(len, batches))

    def _pack(self, by_host: dict[str, list[bytes]]) -> list[list[bytes]]:
        """Batches of up to ``batch`` checks; one host's checks stay in one batch, so one
        job at a time holds a host and its politeness is kept in that job."""
        batches: list[list[bytes]] = []
        current: list[bytes] = []
        for members in by_host.values():
            if current and len(current) + len(members) > self.batch:
                batches.append(current)
                current = []
            current += members
        if current:
            batches.append(current)
        return batches

    def run(self, stop: threading.Event, interval: float = 1.0) -> None:
        """Sync and tick every ``interval`` seconds until ``stop`` is set; now and then,
        queue notifications that a stopped service left undelivered."""
        log.info("scheduler: handing out due takedown checks every %g s", interval)
        next_outbox = 0.0
        while not stop.is_set():
            started = time.monotonic()
            try:
                added = self.sync()
                handed = self.tick()
                if started >= next_outbox:
                    webhooks.requeue_undelivered(self.store, self.conn, self.settings)
                    next_outbox = started + OUTBOX_INTERVAL
            except (redis.RedisError, SQLAlchemyError) as e:
                log.warning("scheduler: %s; retrying", str(e).splitlines()[0])
            else:
                if added or handed:
                    log.info("scheduler: %d new referral(s), %d check(s) queued", added, handed)
            stop.wait(max(0.0, interval - (time.monotonic() - started)))
