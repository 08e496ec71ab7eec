"""Referrals in the store, on SQLite and PostgreSQL: refer, record checks with their state
and events in one go, the webhook outbox, and the statistics computed from it all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import monitor
from monitor.check import Evidence
from monitor.stats import network, takedown_stats
from store import ReportNotFound, Store
from store.schema import reports, takedowns

from .test_store import image_document, postgres, scan_document, store, url  # noqa: F401

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def scanned(store: Store, page: str = "http://example.test/a") -> int:  # noqa: F811
    report_id = store.add_report(page)
    store.save_scan(
        report_id,
        scan_document(images=[image_document("http://cdn.example.test/1.jpg")]),
    )
    return report_id


def test_refer_and_record(store: Store, hotline_env) -> None:  # noqa: F811
    report_id = scanned(store)
    assert store.get_report(report_id)["takedown"] is None
    with pytest.raises(ReportNotFound):
        monitor.refer(store, 999, "host")
    with pytest.raises(monitor.NotScanned, match="not been scanned"):
        monitor.refer(store, store.add_report("http://example.test/b"), "host")
    with pytest.raises(ValueError, match="time zone"):
        monitor.refer(store, report_id, "host", datetime(2026, 1, 1))

    takedown = monitor.refer(store, report_id, "Host A", NOW)
    assert takedown["state"] == "monitoring" and takedown["party"] == "Host A"
    assert takedown["notice_sent_at"] == NOW.isoformat()
    assert takedown["server_ip"] == "192.0.2.7" and takedown["checks"] == []
    evidence = Evidence.from_json(takedown["evidence"])
    assert evidence.image_urls == ("http://cdn.example.test/1.jpg",)
    assert ("md5", "9e107d9d372bb6826bd81d3542a419d6") in evidence.hashes
    # Referring again records the new party and notice, and keeps the rest.
    again = monitor.refer(store, report_id, "Host B", NOW + timedelta(days=1))
    assert again["id"] == takedown["id"] and again["party"] == "Host B"
    assert again["referred_at"] == takedown["referred_at"]

    [row] = store.takedowns_to_check([takedown["id"]])
    assert row["url"] == "http://example.test/a" and row["host"] == "example.test"
    progress = {
        "state": "removed",
        "step": row["step"],
        "pending_since": None,
        "removed_at": NOW,
        "confirmed_at": NOW + timedelta(hours=6),
        "reopened_at": None,
        "next_check_at": None,
    }
    event_ids = store.record_check(
        takedown["id"], NOW, "gone_http", {"stage": "http"}, progress, ["removed"]
    )
    done = store.get_report(report_id)["takedown"]
    assert done["state"] == "removed" and done["next_check_at"] is None
    assert done["checks"] == [{"at": NOW.isoformat(), "verdict": "gone_http", "stage": "http"}]

    # The outbox: an event is undelivered until every receiver has it.
    [event_id] = event_ids
    event = store.takedown_event(event_id)
    assert event["event"] == "removed" and event["takedown"]["party"] == "Host B"
    assert store.undelivered_events(since=NOW - timedelta(days=1)) == [event_id]
    store.mark_delivered(event_id, ["http://a.test/hook"], complete=False)
    assert store.takedown_event(event_id)["delivered_to"] == ["http://a.test/hook"]
    store.mark_delivered(event_id, ["http://a.test/hook", "http://b.test/"], complete=True)
    assert store.undelivered_events(since=NOW - timedelta(days=1)) == []


def test_stats(store: Store, hotline_env) -> None:  # noqa: F811
    """Times to removal from receipt and from notice; shares only over known outcomes."""
    days = timedelta(days=1)
    for n, (party, ip, removed_after, age) in enumerate(
        [
            ("A", "198.51.100.7", 1, 10),  # removed a day after the notice
            ("A", "198.51.100.9", 5, 10),
            ("B", "2001:db8::1", None, 10),  # never removed, old enough to count
            ("B", None, None, 1),  # too young for either share
        ]
    ):
        report_id = scanned(store, f"http://example.test/{n}")
        referred = NOW - age * days
        takedown = monitor.refer(store, report_id, party, referred)
        with store.engine.begin() as conn:
            conn.execute(
                reports.update().where(reports.c.id == report_id).values(received_at=referred)
            )
            conn.execute(
                takedowns.update()
                .where(takedowns.c.id == takedown["id"])
                .values(
                    server_ip=ip,
                    referred_at=referred,
                    state="removed" if removed_after else "monitoring",
                    removed_at=referred + removed_after * days if removed_after else None,
                )
            )
    stats = takedown_stats(store, NOW)
    assert stats["referrals"] == 4
    assert stats["states"] == {"monitoring": 2, "removed": 2, "reappeared": 0, "overdue": 0}
    notice = stats["from_notice"]
    assert notice["removed"] == 2 and notice["median_s"] == 3 * 86400
    assert notice["p90_s"] == 5 * 86400
    assert (notice["within_3d"], notice["known_3d"]) == (pytest.approx(1 / 3, 1e-3), 3)
    assert (notice["within_7d"], notice["known_7d"]) == (pytest.approx(2 / 3, 1e-3), 3)
    assert stats["by_party"]["A"]["from_received"]["within_7d"] == 1.0
    assert set(stats["by_network"]) == {"198.51.100.0/24", "2001:db8::/48", "unknown"}
    assert takedown_stats(store, NOW, party="B")["referrals"] == 2
    assert takedown_stats(store, NOW, since=NOW - 2 * days)["referrals"] == 1
    assert network("not an ip") == "unknown"
