"""How fast referred material comes down: counts by state, time to removal, share removed
within 3 and 7 days; overall, per party and per hosting network.

Time to removal ends at the first of the two negative checks that confirmed it, and
starts either when the report was received or when the notice was sent. A share within
N days counts only referrals whose outcome at N days is known: removed, or older than N.
"""

from __future__ import annotations

import ipaddress
import math
import statistics
from collections import Counter, defaultdict
from datetime import datetime, timedelta

from store import Store
from store.schema import TAKEDOWN_STATES

WINDOWS = (3, 7)  # days


def takedown_stats(
    store: Store, now: datetime, *, since: datetime | None = None, party: str | None = None
) -> dict:
    rows = store.takedown_facts(since=since, party=party)
    by_party: dict[str, list[dict]] = defaultdict(list)
    by_network: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_party[row["party"]].append(row)
        by_network[network(row["server_ip"])].append(row)
    return {
        "now": now.isoformat(),
        "since": since.isoformat() if since else None,
        "party": party,
        **summary(rows, now),
        "by_party": {name: summary(group, now) for name, group in sorted(by_party.items())},
        "by_network": {
            name: summary(group, now)
            for name, group in sorted(by_network.items(), key=lambda kv: -len(kv[1]))
        },
    }


def network(ip: str | None) -> str:
    """The hosting network of a server address: its /24 (IPv4) or /48 (IPv6)."""
    if not ip:
        return "unknown"
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return "unknown"
    prefix = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


def summary(rows: list[dict], now: datetime) -> dict:
    states = Counter(row["state"] for row in rows)
    return {
        "referrals": len(rows),
        "states": {state: states.get(state, 0) for state in TAKEDOWN_STATES},
        "from_received": _times(rows, "received_at", now),
        "from_notice": _times(rows, "notice_sent_at", now),
    }


def _times(rows: list[dict], start: str, now: datetime) -> dict:
    timed = [row for row in rows if row[start] is not None]
    took = sorted(
        (row["removed_at"] - row[start]).total_seconds() for row in timed if row["removed_at"]
    )
    out: dict = {
        "removed": len(took),
        "median_s": round(statistics.median(took)) if took else None,
        "p90_s": round(took[math.ceil(0.9 * len(took)) - 1]) if took else None,
    }
    for days in WINDOWS:
        limit = timedelta(days=days)
        known = [r for r in timed if r["removed_at"] or now - r[start] >= limit]
        within = sum(1 for r in known if r["removed_at"] and r["removed_at"] - r[start] <= limit)
        out[f"within_{days}d"] = round(within / len(known), 4) if known else None
        out[f"known_{days}d"] = len(known)
    return out
