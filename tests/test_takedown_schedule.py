"""The due set in Redis: filled from the database, handed out in per-host batches, leased
so that nothing is lost, and a busy host's backlog kept out of everyone else's way."""

from __future__ import annotations

import redis
from rq import Queue

import monitor
from hotline.config import Settings
from monitor.schedule import BUSY, DUE, SYNCED, Scheduler, member, parse_member, set_next
from store import Store
from workers.queues import RECHECK

from .takedown_sim import scanned_report


def make_referrals(store: Store, hosts: list[str]) -> list[int]:
    ids = []
    for n, host in enumerate(hosts):
        report_id = scanned_report(store, f"http://{host}/p{n}", f"http://{host}/i{n}.jpg")
        ids.append(monitor.refer(store, report_id, "host")["id"])
    return ids


def test_sync_dispatch_lease_and_defer(hotline_env, redis_url, monkeypatch) -> None:
    monkeypatch.setenv("HOTLINE_RECHECK_SCHEDULE", "1s")
    monkeypatch.setenv("HOTLINE_RECHECK_HOST_INTERVAL", "0.1s")
    settings = Settings.from_env()
    conn = redis.Redis.from_url(redis_url)
    conn.flushdb()
    store = Store(settings.database_url)
    store.migrate()
    ids = make_referrals(store, ["a.test"] * 5 + ["b.test"] * 2 + ["c.test"])
    # A scan of 8 reads the whole due set: it is full, so backlogs get deferred.
    scheduler = Scheduler(store, conn, settings, batch=3, scan=8, max_waiting=1)

    assert scheduler.sync() == 8 and scheduler.sync() == 0  # the second adds nothing
    assert int(conn.get(SYNCED)) == ids[-1]
    assert parse_member(member(7, "a.test")) == (7, "a.test")
    now = max(conn.zscore(DUE, m) for m in conn.zrange(DUE, 0, -1)) + 0.01

    # Batches of at most 3, one host's checks together; one job may wait in the queue.
    queue = Queue(RECHECK, connection=conn)
    assert scheduler.tick(now) == 3
    first = [parse_member(m) for m in queue.jobs[0].args[0]]
    assert [host for _, host in first] == ["a.test"] * 3
    assert scheduler.tick(now) == 0  # the queue is full: hold back
    queue.empty()
    assert scheduler.tick(now) == 3
    assert sorted(parse_member(m)[1] for m in queue.jobs[0].args[0]) == ["b.test"] * 2 + ["c.test"]
    # Claimed members are leased, not removed; a.test's other two wait a job's worth.
    scores = {parse_member(m)[0]: s for m, s in conn.zrange(DUE, 0, -1, withscores=True)}
    assert len(scores) == 8
    leased = {i for i, _ in first} | set(ids[5:])
    assert all(scores[i] >= now + scheduler.lease for i in leased)
    # Which of a.test's five come first depends on the schedule's jitter.
    assert all(scores[i] == now + scheduler.defer for i in set(ids[:5]) - leased)
    assert {h.decode() for h in conn.zrange(BUSY, 0, -1)} == {"a.test", "b.test", "c.test"}

    queue.empty()
    monitor.schedule.release(conn, {"a.test"})
    assert scheduler.tick(now + scheduler.defer) == 2  # a.test's backlog, a.test free again

    # A referral whose monitoring ended leaves the set; a fresh Redis is filled again.
    set_next(conn, ids[0], "a.test", None)
    assert conn.zcard(DUE) == 7
    conn.flushdb()
    assert scheduler.sync() == 8
