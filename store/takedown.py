"""Referrals and their checks: what monitor/ needs to keep, nothing it needs to decide."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, insert, select, update

from store.schema import reports, takedown_checks, takedown_events, takedowns

# Columns that a check moves on (monitor.lifecycle.Progress has the same fields).
PROGRESS = (
    "state", "step", "pending_since", "removed_at", "confirmed_at", "reopened_at",
    "next_check_at",
)  # fmt: skip
_TIMES = ("referred_at", "notice_sent_at", "removed_at", "confirmed_at", "reopened_at")


class TakedownStore:
    """Store methods for referrals, checks and the webhook outbox (mixed into Store)."""

    engine: Engine

    def save_referral(self, report_id: int, values: dict[str, Any]) -> int:
        """Create the report's referral, or update party and notice time of an existing one
        (a new notice to the same or another party); its checks and state are kept."""
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            existing = conn.scalar(select(takedowns.c.id).where(takedowns.c.report_id == report_id))
            if existing is not None:
                kept = {k: values[k] for k in ("party", "notice_sent_at") if values.get(k)}
                conn.execute(
                    update(takedowns)
                    .where(takedowns.c.id == existing)
                    .values(**kept, updated_at=now)
                )
                return existing
            return conn.execute(
                insert(takedowns).values(report_id=report_id, updated_at=now, **values)
            ).inserted_primary_key[0]

    def get_takedown(self, report_id: int) -> dict | None:
        """The report's referral with all its checks, oldest first; None when not referred."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(takedowns).where(takedowns.c.report_id == report_id)
            ).one_or_none()
            if row is None:
                return None
            checks = conn.execute(
                select(takedown_checks.c.at, takedown_checks.c.verdict, takedown_checks.c.detail)
                .where(takedown_checks.c.takedown_id == row.id)
                .order_by(takedown_checks.c.id)
            ).all()
        return {
            "id": row.id,
            "report_id": row.report_id,
            "state": row.state,
            "party": row.party,
            **{name: _iso(getattr(row, name)) for name in _TIMES},
            "next_check_at": _iso(row.next_check_at),
            "server_ip": row.server_ip,
            "evidence": row.evidence,
            "checks": [{"at": _iso(c.at), "verdict": c.verdict, **c.detail} for c in checks],
        }

    def takedowns_to_check(self, ids: list[int]) -> list[dict]:
        """What a check needs of each referral: URL, evidence and progress."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(takedowns, reports.c.url)
                .join(reports)
                .where(takedowns.c.id.in_(ids))
                .order_by(takedowns.c.id)
            ).mappings()
            return [dict(row) for row in rows]

    def record_check(
        self,
        takedown_id: int,
        at: datetime,
        verdict: str,
        detail: dict,
        progress: dict[str, Any],
        events: list[str],
    ) -> list[int]:
        """Keep a check with the progress it caused and its notifications, in one
        transaction (no state change without its event); returns the event ids."""
        with self.engine.begin() as conn:
            conn.execute(
                insert(takedown_checks).values(
                    takedown_id=takedown_id, at=at, verdict=verdict, detail=detail
                )
            )
            conn.execute(
                update(takedowns)
                .where(takedowns.c.id == takedown_id)
                .values({**{k: progress[k] for k in PROGRESS}, "updated_at": datetime.now(UTC)})
            )
            return [
                conn.execute(
                    insert(takedown_events).values(
                        takedown_id=takedown_id, kind=kind, at=at, delivered_to=[]
                    )
                ).inserted_primary_key[0]
                for kind in events
            ]

    def takedowns_after(self, after_id: int, limit: int) -> list[tuple[int, str, datetime]]:
        """(id, host, next_check_at) of scheduled referrals with an id above after_id."""
        with self.engine.connect() as conn:
            return [
                tuple(row)
                for row in conn.execute(
                    select(takedowns.c.id, takedowns.c.host, takedowns.c.next_check_at)
                    .where(takedowns.c.id > after_id)
                    .order_by(takedowns.c.id)
                    .limit(limit)
                )
            ]

    def takedown_event(self, event_id: int) -> dict | None:
        """A notification with the referral it is about, as webhooks send it."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(
                    takedown_events,
                    takedowns.c.report_id,
                    takedowns.c.party,
                    takedowns.c.state,
                    takedowns.c.server_ip,
                    reports.c.url,
                    *(takedowns.c[name] for name in _TIMES),
                )
                .join(takedowns, takedowns.c.id == takedown_events.c.takedown_id)
                .join(reports)
                .where(takedown_events.c.id == event_id)
            ).one_or_none()
        if row is None:
            return None
        return {
            "id": row.id,
            "event": row.kind,
            "at": _iso(row.at),
            "delivered_to": row.delivered_to,
            "takedown": {
                "report_id": row.report_id,
                "url": row.url,
                "party": row.party,
                "state": row.state,
                "server_ip": row.server_ip,
                **{name: _iso(getattr(row, name)) for name in _TIMES},
            },
        }

    def mark_delivered(self, event_id: int, delivered_to: list[str], complete: bool) -> None:
        values: dict[str, Any] = {"delivered_to": delivered_to}
        if complete:
            values["delivered_at"] = datetime.now(UTC)
        with self.engine.begin() as conn:
            conn.execute(
                update(takedown_events).where(takedown_events.c.id == event_id).values(values)
            )

    def undelivered_events(self, since: datetime) -> list[int]:
        """Notifications not yet delivered everywhere, newer than since."""
        with self.engine.connect() as conn:
            return list(
                conn.scalars(
                    select(takedown_events.c.id)
                    .where(takedown_events.c.delivered_at.is_(None), takedown_events.c.at >= since)
                    .order_by(takedown_events.c.id)
                )
            )

    def takedown_facts(self, *, since: datetime | None = None, party: str | None = None) -> list:
        """One row per referral with the times the statistics are computed from."""
        query = select(
            takedowns.c.party,
            takedowns.c.state,
            takedowns.c.server_ip,
            reports.c.received_at,
            takedowns.c.referred_at,
            takedowns.c.notice_sent_at,
            takedowns.c.removed_at,
        ).join(reports)
        if since is not None:
            query = query.where(takedowns.c.referred_at >= since)
        if party is not None:
            query = query.where(takedowns.c.party == party)
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
