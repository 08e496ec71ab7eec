"""Text views of takedown verification for the ``hotline`` command (JSON is printed as is)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from .config import ConfigError, parse_duration


def parse_time(value: str, name: str, now: datetime) -> datetime:
    """An ISO 8601 time (UTC unless it says otherwise), or a duration meaning that long ago."""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        try:
            return now - timedelta(seconds=parse_duration(value, name))
        except ConfigError:
            raise ConfigError(
                f"{name}: {value!r} is neither an ISO time (2026-12-05T09:30:00+00:00) "
                "nor a duration meaning that long ago (7d)"
            ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def takedown_lines(takedown: dict) -> list[str]:
    checks = takedown["checks"]
    lines = [
        f"takedown {takedown['state']}: referred to {takedown['party']} "
        f"{takedown['referred_at']}"
        + (f", notice sent {takedown['notice_sent_at']}" if takedown["notice_sent_at"] else "")
    ]
    if takedown["confirmed_at"]:
        lines.append(f"  removed {takedown['removed_at']}, confirmed {takedown['confirmed_at']}")
    for check in checks[-5:]:
        lines.append(
            f"  check {check['at']}  {check['verdict']}  "
            f"({check['stage']}, HTTP {check['http_status']})"
        )
    if len(checks) > 5:
        lines.append(f"  … {len(checks) - 5} earlier checks (--json shows all)")
    lines.append(f"  next check {takedown['next_check_at'] or 'none: monitoring ended'}")
    return lines


def stats_text(stats: dict) -> str:
    out = [_summary_line("all referrals", stats)]
    out += _timing_lines(stats, "  ")
    for title, groups in (("by party", stats["by_party"]), ("by network", stats["by_network"])):
        if groups:
            out.append(title)
            for name, group in groups.items():
                out.append(_summary_line(f"  {name}", group))
                out += _timing_lines(group, "    ")
    return "\n".join(out)


def _summary_line(title: str, s: dict) -> str:
    states = ", ".join(f"{state} {n}" for state, n in s["states"].items() if n)
    return f"{title}: {s['referrals']} ({states or 'none'})"


def _timing_lines(s: dict, indent: str) -> list[str]:
    lines = []
    for key, label in (("from_received", "from report"), ("from_notice", "from notice")):
        t = s[key]
        if not t["removed"] and not t["known_3d"]:
            continue
        lines.append(
            f"{indent}{label}: median {_span(t['median_s'])}, p90 {_span(t['p90_s'])}, "
            f"removed within 3d {_share(t['within_3d'], t['known_3d'])}, "
            f"within 7d {_share(t['within_7d'], t['known_7d'])}"
        )
    return lines


def _span(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes = round(seconds / 60)
    days, minutes = divmod(minutes, 1440)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {minutes}m" if hours else f"{minutes}m" if minutes else f"{seconds:.0f}s"


def _share(share: float | None, known: int) -> str:
    return "-" if share is None else f"{share:.0%} of {known}"
