"""The verdict → state rules, on a clock the test moves: two spaced negatives confirm a
removal, only ``live`` breaks a run, overdue, reappearance, the schedule and its end."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta

import pytest

from hotline.config import ConfigError, TakedownSettings, parse_schedule
from monitor.check import combine
from monitor.lifecycle import Progress, advance, start

T0 = datetime(2026, 1, 1, tzinfo=UTC)
H = timedelta(hours=1)
POLICY = TakedownSettings(
    schedule=parse_schedule("1h,3h,6h*2,1d", "test"),
    confirm_spacing=6 * 3600,
    overdue_after=72 * 3600,
    after_removal=parse_schedule("7d,30d", "test"),
    per_host=2,
    host_interval=1,
    webhook_urls=(),
    webhook_secret=None,
    webhook_retries=(1,),
)


class NoJitter(random.Random):
    def random(self) -> float:
        return 0.0


def run(verdicts: list[tuple[timedelta, str]], policy: TakedownSettings = POLICY):
    """Feed verdicts at T0 + offset; returns the final progress and all events."""
    p = start(T0, None, policy, NoJitter())
    events = []
    for offset, verdict in verdicts:
        p, new = advance(p, verdict, T0 + offset, policy, NoJitter())
        events += new
    return p, events


def test_schedule_is_front_loaded_then_repeats_its_last_gap() -> None:
    assert parse_schedule("1h,3h,6h*2,1d", "x") == (3600, 10800, 21600, 21600, 86400)
    p = start(T0, None, POLICY, NoJitter())
    times = [p.next_check_at]
    for _ in range(6):
        p, _ = advance(p, "live", p.next_check_at, POLICY, NoJitter())
        times.append(p.next_check_at)
    offsets = [(t - T0) / H for t in times]
    # +1h, +4h, +10h, +16h, +40h, +64h, then capped at the overdue deadline (72h).
    assert offsets == [1, 4, 10, 16, 40, 64, 72]
    for bad in ("", "1h*0", "0s", "1h,soon", "2x*3"):
        with pytest.raises(ConfigError):
            parse_schedule(bad, "HOTLINE_RECHECK_SCHEDULE")


def test_jitter_only_delays_and_stays_within_a_tenth_of_the_gap() -> None:
    rng = random.Random(7)
    for _ in range(50):
        first = start(T0, None, POLICY, rng).next_check_at
        assert T0 + H <= first <= T0 + H * 1.1


def test_two_negatives_spaced_apart_confirm_removal() -> None:
    p, events = run([(H, "gone_http"), (7 * H, "gone_http")])
    assert p.state == "removed" and events == ["removed"]
    assert p.removed_at == T0 + H and p.confirmed_at == T0 + 7 * H
    assert p.next_check_at == T0 + 7 * H + timedelta(days=7)


def test_the_confirming_check_comes_when_the_spacing_allows() -> None:
    p, _ = run([(H, "gone_dns")])
    assert p.pending_since == T0 + H and p.next_check_at == T0 + 7 * H
    p, events = run([(H, "gone_dns"), (2 * H, "content_gone")])
    assert p.state == "monitoring" and events == []  # too close together


def test_transient_and_denied_never_count_and_never_break_a_run() -> None:
    for between in ("transient", "denied", "legal_451", "blocked"):
        p, _ = run([(H, between), (2 * H, between)])
        assert p.state == "monitoring" and p.pending_since is None
        p, events = run([(H, "gone_connect"), (3 * H, between), (8 * H, "gone_connect")])
        assert p.state == "removed" and events == ["removed"], between


def test_live_between_negatives_starts_over() -> None:
    p, events = run([(H, "gone_http"), (4 * H, "live"), (8 * H, "gone_http")])
    assert p.state == "monitoring" and events == [] and p.pending_since == T0 + 8 * H


def test_overdue_once_when_still_not_removed_after_the_deadline() -> None:
    p, events = run([(H, "live"), (73 * H, "live"), (97 * H, "live")])
    assert p.state == "overdue" and events == ["overdue"]
    p, events = run([(H, "live"), (73 * H, "gone_http"), (80 * H, "gone_http")])
    assert p.state == "removed" and events == ["removed"]  # pending at the deadline
    # The overdue clock starts at the notice when there is one.
    p = start(T0, T0 + 48 * H, POLICY, NoJitter())
    p, events = advance(p, "live", T0 + 100 * H, POLICY, NoJitter())
    assert p.state == "monitoring" and events == []


def test_reappearance_reopens_and_a_second_removal_is_confirmed_again() -> None:
    p, events = run(
        [
            (H, "gone_http"),
            (7 * H, "gone_http"),  # removed
            (7 * H + timedelta(days=7), "live"),  # back at the +7 d check
        ]
    )
    assert p.state == "reappeared" and events == ["removed", "reappeared"]
    assert p.reopened_at == T0 + 7 * H + timedelta(days=7)
    assert p.next_check_at == p.reopened_at + H  # the schedule starts over
    back = p.reopened_at
    p, new = advance(p, "content_gone", back + 2 * H, POLICY, NoJitter())
    p, new2 = advance(p, "content_gone", back + 9 * H, POLICY, NoJitter())
    assert p.state == "removed" and new + new2 == ["removed"]
    assert p.removed_at == back + 2 * H


def test_monitoring_ends_after_the_checks_after_removal() -> None:
    p, _ = run([(H, "gone_http"), (7 * H, "gone_http")])
    for offset in (7, 30):
        assert p.next_check_at == p.confirmed_at + timedelta(days=offset)
        p, events = advance(p, "transient", p.next_check_at, POLICY, NoJitter())
        assert p.state == "removed" and events == []
    assert p.next_check_at is None


def test_progress_fields_are_the_takedowns_columns() -> None:
    from store.schema import takedowns

    assert {f.name for f in dataclasses.fields(Progress)} <= set(takedowns.c.keys())


def test_an_image_url_still_serving_keeps_the_referral_live() -> None:
    assert combine("gone_http", ["live"]) == "live"
    assert combine("gone_http", ["gone_http", "content_gone"]) == "gone_http"
    # A gone page with an image URL we could not read proves nothing yet.
    assert combine("gone_http", ["gone_http", "transient"]) == "transient"
    assert combine("denied", ["gone_http"]) == "denied"
    assert combine("content_gone", []) == "content_gone"
