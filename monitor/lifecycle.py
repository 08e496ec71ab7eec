"""From a check's verdict to the referral's state and its next check.

Pure functions over :class:`Progress`, so the rules (two spaced negatives confirm a
removal, only ``live`` breaks a run, overdue, reappearance) are tested without a network.
"""

from __future__ import annotations

import dataclasses
import random
from datetime import datetime, timedelta

from hotline.config import TakedownSettings

# Verdicts that say the material is gone; any other one leaves the question open.
NEGATIVE = frozenset({"content_gone", "gone_http", "gone_dns", "gone_connect"})
# Checks are spread by up to this share of their gap, so a burst of referrals does
# not stay a burst of checks.
JITTER = 0.1


@dataclasses.dataclass(frozen=True)
class Progress:
    """Where a referral stands; the fields are columns of the takedowns table.

    ``step`` counts the checks scheduled since the referral was (re)opened, or since
    its removal was confirmed (then it indexes ``after_removal``).
    """

    state: str
    step: int
    referred_at: datetime
    notice_sent_at: datetime | None = None
    pending_since: datetime | None = None
    removed_at: datetime | None = None
    confirmed_at: datetime | None = None
    reopened_at: datetime | None = None
    next_check_at: datetime | None = None

    @property
    def overdue_at(self) -> datetime:
        """When the referral becomes overdue unless confirmed removed before."""
        return self.reopened_at or self.notice_sent_at or self.referred_at

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def start(
    referred_at: datetime,
    notice_sent_at: datetime | None,
    policy: TakedownSettings,
    rng: random.Random | None = None,
) -> Progress:
    """A new referral and its first check."""
    fresh = Progress(
        state="monitoring", step=0, referred_at=referred_at, notice_sent_at=notice_sent_at
    )
    return _next_active(fresh, referred_at, policy, rng or random)


def advance(
    p: Progress,
    verdict: str,
    at: datetime,
    policy: TakedownSettings,
    rng: random.Random | None = None,
) -> tuple[Progress, list[str]]:
    """The progress after a check with ``verdict`` at ``at``, and the events it raises."""
    rng = rng or random
    spacing = timedelta(seconds=policy.confirm_spacing)
    deadline = p.overdue_at + timedelta(seconds=policy.overdue_after)
    if p.state == "removed":
        if verdict == "live":
            reopened = dataclasses.replace(p, state="reappeared", reopened_at=at, step=0)
            return _next_active(reopened, at, policy, rng), ["reappeared"]
        return _next_after_removal(p, policy), []
    if verdict in NEGATIVE:
        if p.pending_since is None:
            p = dataclasses.replace(p, pending_since=at)
        elif at - p.pending_since >= spacing:
            removed = dataclasses.replace(
                p,
                state="removed",
                removed_at=p.pending_since,
                confirmed_at=at,
                pending_since=None,
                step=0,
            )
            return _next_after_removal(removed, policy), ["removed"]
        # The confirming check comes as soon as the spacing allows.
        confirm_at = p.pending_since + spacing
        return dataclasses.replace(p, next_check_at=_jittered(confirm_at, 1.0, rng)), []
    events = []
    if verdict == "live":
        p = dataclasses.replace(p, pending_since=None)
    if p.state != "overdue" and p.pending_since is None and at >= deadline:
        p = dataclasses.replace(p, state="overdue")
        events.append("overdue")
    return _next_active(p, at, policy, rng), events


def _next_active(p: Progress, at: datetime, policy: TakedownSettings, rng) -> Progress:
    """Next check of an open referral: the schedule's next gap, but not after the moment
    it would become overdue (so that is noticed on time)."""
    gap = policy.schedule[min(p.step, len(policy.schedule) - 1)]
    when = _jittered(at + timedelta(seconds=gap), gap, rng)
    deadline = p.overdue_at + timedelta(seconds=policy.overdue_after)
    if p.state != "overdue" and at < deadline < when:
        when = deadline
    return dataclasses.replace(p, step=p.step + 1, next_check_at=when)


def _next_after_removal(p: Progress, policy: TakedownSettings) -> Progress:
    """The checks after a confirmed removal, at fixed offsets from it; then monitoring ends."""
    if p.step >= len(policy.after_removal):
        return dataclasses.replace(p, next_check_at=None)
    assert p.confirmed_at is not None
    when = p.confirmed_at + timedelta(seconds=policy.after_removal[p.step])
    return dataclasses.replace(p, step=p.step + 1, next_check_at=when)


def _jittered(when: datetime, gap: float, rng) -> datetime:
    return when + timedelta(seconds=rng.random() * JITTER * gap)
