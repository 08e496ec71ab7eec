"""What the API and the web UI do, once: each action checks its input, does the work, and
writes the audit entry. Synchronous (store and Redis calls); handlers run them in threads.

`who` is the caller as auth.identify() found it: {id, name, role, ...}.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import redis
from aiohttp import web
from rq import Queue

import monitor
from hotline.config import Settings
from matcher import LineError, ParsedEntry, get_signal_type, parse_hash_list
from matcher.signals import PDQ
from store import Store
from store.search import HASH_COLUMNS, NEAR_TYPES, Near, SearchFilters
from workers import enqueue_retro, enqueue_scan

from .spec import bad_request, parse_time

log = logging.getLogger(__name__)

# Bits per perceptual hash: the largest distance that means anything.
NEAR_BITS = {"phash": 64, "pdq": 256}
# Hash length (hex digits) → the signal types a bare hash of that length may be.
BY_LENGTH = {32: ("md5",), 40: ("sha1",), 16: ("phash",), 64: ("sha256", "pdq")}
REMOVAL_DAYS = 30
SCAN_EVIDENCE = (
    "url", "final_url", "redirects", "server_ip", "http_status", "started_at", "finished_at",
    "status", "error",
)  # fmt: skip
IMAGE_EVIDENCE = ("url", *HASH_COLUMNS, "width", "height", "bytes", "format", "matches")


class NotFound(LookupError):
    """What was asked for does not exist (HTTP 404)."""


def now() -> datetime:
    return datetime.now(UTC)


# reports


def submit(
    store: Store, conn: redis.Redis, settings: Settings, who: dict, items: list[dict]
) -> list[dict]:
    """Store reports, then queue their scans. Stored is acknowledged: a report whose job
    Redis did not take is queued by `hotline up` later, never lost."""
    checked = [(_report_url(item.get("url")), _source(item.get("source"))) for item in items]
    ids = [store.add_report(url, source) for url, source in checked]
    store.audit(who, "report.submit", f"report:{ids[0]}", {"reports": ids})
    results = []
    for report_id in ids:
        try:
            enqueue_scan(conn, settings, report_id)
            queued = True
        except redis.RedisError as e:
            log.warning("report %s stored, not queued: %s", report_id, e)
            queued = False
        results.append({"report_id": report_id, "queued": queued})
    return results


def report(store: Store, who: dict, report_id: int) -> dict:
    """A report with its scans, images, matches and takedown; the view is audited."""
    found = store.get_report(report_id)
    found["takedown"] = store.get_takedown(report_id)
    store.audit(who, "report.view", f"report:{report_id}")
    return found


def evidence(store: Store, who: dict, report_id: int) -> dict:
    """What police need to act on a report: URLs, redirect chain, server IPs, times, hashes
    and matches, with a digest of it all. Never media."""
    found = store.get_report(report_id)
    takedown = store.get_takedown(report_id)
    summary = {
        "report": {key: found[key] for key in ("id", "url", "source", "received_at", "state")},
        "scans": [
            {
                **{key: scan[key] for key in SCAN_EVIDENCE},
                "images": [{key: image[key] for key in IMAGE_EVIDENCE} for image in scan["images"]],
            }
            for scan in found["scans"]
        ],
        "takedown": takedown and {k: v for k, v in takedown.items() if k != "evidence"},
        "media": "none: this summary holds hashes and metadata only",
    }
    canonical = json.dumps(summary, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    store.audit(who, "report.evidence", f"report:{report_id}")
    return {
        **summary,
        "generated_at": now().isoformat(),
        "generated_by": who["name"],
        "sha256": hashlib.sha256(canonical.encode()).hexdigest(),
    }


def evidence_text(doc: dict) -> str:
    """The evidence summary as plain text for printing."""
    report = doc["report"]
    lines = [
        f"Evidence summary: report {report['id']} (no media; hashes and metadata only)",
        f"Reported URL: {report['url']}",
        f"Received: {report['received_at']}   source: {report['source'] or '-'}",
        f"Generated: {doc['generated_at']} by {doc['generated_by']}",
        f"SHA-256 of the summary (JSON form): {doc['sha256']}",
    ]
    for n, scan in enumerate(doc["scans"], 1):
        lines += [
            "",
            f"Scan {n}: {scan['status']} {scan['started_at']} → {scan['finished_at']}",
            f"  URL: {scan['url']}",
            *(f"  redirect {hop.get('status')}: {hop.get('url')}" for hop in scan["redirects"]),
            f"  final URL: {scan['final_url']}",
            f"  server IP: {scan['server_ip'] or '-'}   HTTP {scan['http_status']}",
        ]
        if scan["error"]:
            lines.append(f"  error: {scan['error']['kind']}: {scan['error']['message']}")
        for image in scan["images"]:
            lines.append(f"  image {image['url']}")
            lines += [f"    {t}: {image[t]}" for t in HASH_COLUMNS if image[t]]
            lines += [
                f"    MATCH {m['list']} [{m['category'] or '-'}] {m['signal_type']} "
                f"distance {m['distance']}" + (" (retro)" if m["retro"] else "")
                for m in image["matches"]
            ]
    takedown = doc["takedown"]
    if takedown:
        lines += ["", f"Takedown: {takedown['state']}, referred to {takedown['party']} "
                  f"at {takedown['referred_at']}"]  # fmt: skip
        lines += [f"  check {c['at']}: {c['verdict']}" for c in takedown["checks"]]
    return "\n".join(lines) + "\n"


def refer(
    store: Store, settings: Settings, who: dict, report_id: int, party: Any, notice_sent_at: Any
) -> dict:
    """Refer a report for takedown; monitor/ then re-checks it until removal is confirmed.
    `notice_sent_at` is ISO 8601 text or None (a form's empty field too)."""
    party = checked_text(party, "party", 200)
    sent = None
    if notice_sent_at is not None and notice_sent_at != "":
        sent = parse_time(checked_text(notice_sent_at, "notice_sent_at", 64), "notice_sent_at")
    try:
        takedown = monitor.refer(store, report_id, party, sent, settings=settings)
    except monitor.NotScanned as e:
        raise web.HTTPConflict(text=str(e)) from None
    except ValueError as e:
        raise bad_request(str(e)) from None
    store.audit(who, "report.refer", f"report:{report_id}", {"party": party})
    return takedown


# search and pivot


def filters(values: Mapping[str, Any]) -> SearchFilters:
    """SearchFilters from parsed query values (spec.SEARCH), hashes normalized."""
    exact = None
    if "hash" in values:
        exact = _hash_types(values["hash"], values.get("hash_type"))
    near = None
    if "near" in values:
        near = _near(values["near"], values.get("near_type"), values.get("distance"))
    elif "distance" in values:
        raise bad_request("distance needs near=<phash or pdq hash>")
    return SearchFilters(
        url=values.get("url"),
        domain=values.get("domain"),
        server_ip=values.get("server_ip"),
        hash=exact,
        near=near,
        list=values.get("list"),
        category=values.get("category"),
        state=values.get("state"),
        takedown=values.get("takedown"),
        since=values.get("since"),
        until=values.get("until"),
        retro=values.get("retro"),
        matched=values.get("matched"),
    )


def search(store: Store, who: dict, values: Mapping[str, Any]) -> dict:
    page, per_page = values.get("page", 1), values.get("per_page", 50)
    total, results = store.search_reports(
        filters(values),
        sort=values.get("sort", "received_at"),
        descending=values.get("order", "desc") == "desc",
        offset=(page - 1) * per_page,
        limit=per_page,
    )
    store.audit(who, "search", None, {**audited(values), "total": total})
    return {"total": total, "page": page, "per_page": per_page, "results": results}


def export_ids(store: Store, who: dict, values: Mapping[str, Any]) -> list[int]:
    """Ids of every report of a search, in order; the export is audited with its size."""
    ids = store.search_ids(
        filters(values),
        sort=values.get("sort", "received_at"),
        descending=values.get("order", "desc") == "desc",
    )
    store.audit(who, "search.export", None, {**audited(values), "total": len(ids)})
    return ids


def pivot(store: Store, who: dict, signal_type: str, value: str, values: Mapping[str, Any]) -> dict:
    """Every sighting of a hash, or of hashes within `distance` of it."""
    value = _normalize(_signal_type(signal_type), value)
    distance = values.get("distance")
    if distance is not None:
        distance = _near(value, signal_type, distance).distance
    page, per_page = values.get("page", 1), values.get("per_page", 100)
    found = store.hash_sightings(
        signal_type, value, distance=distance, offset=(page - 1) * per_page, limit=per_page
    )
    store.audit(who, "hash.pivot", f"hash:{signal_type}:{value}", {"distance": distance})
    return {
        "signal_type": signal_type,
        "hash": value,
        "distance": distance,
        "page": page,
        "per_page": per_page,
        **found,
    }


def classify(
    store: Store, conn: redis.Redis, settings: Settings, who: dict, body: Mapping[str, Any]
) -> dict:
    """Assess once: a seen image hash goes on the hotline's own list with a category, so
    the next page showing the image is recognised without anyone looking at it again.

    An exact hash brings the image's perceptual hashes along (altered copies match too).
    Stored images are then re-matched against the list (retro-matching).
    """
    signal_type = _signal_type(body.get("signal_type"))
    value = _normalize(signal_type, body.get("hash"))
    category = checked_text(body.get("category"), "category", 100)
    seen = store.seen_image(signal_type, value)
    if seen is None:
        raise NotFound(
            f"no stored image has {signal_type} {value}: only seen hashes can be classified"
        )
    hashes = {signal_type: value}
    if get_signal_type(signal_type).exact:
        hashes |= {t: seen[t] for t in ("md5", "sha1", "sha256", "phash") if seen[t]}
        if seen["pdq"] and (seen["pdq_quality"] or 0) >= PDQ.min_quality:
            hashes["pdq"] = seen["pdq"]
    own = settings.api.own_list
    ref = f"assessed by {who['name']} {now():%Y-%m-%d}"
    store.create_list(own, kind="known")
    added, already = store.add_entries(own, [(t, h, ref, category) for t, h in hashes.items()])
    retro_job = _queue_retro(conn, settings, own) if added else None
    detail = {"category": category, "list": own, "added": added}
    store.audit(who, "hash.classify", f"hash:{signal_type}:{value}", detail)
    return {
        "list": own,
        "category": category,
        "hashes": hashes,
        "added": added,
        "already_listed": already,
        "retro_job": retro_job,
    }


def _queue_retro(conn: redis.Redis, settings: Settings, list_name: str) -> str | None:
    """Re-match stored images against a list's new or re-enabled entries; None without
    Redis (the entries wait in the database, and `hotline up` queues them)."""
    try:
        return enqueue_retro(conn, settings, list_name)
    except redis.RedisError as e:
        log.warning("retro-matching of %s not queued: %s", list_name, e)
        return None


# lists


def import_list(
    store: Store,
    conn: redis.Redis,
    settings: Settings,
    who: dict,
    name: str,
    text: str,
    *,
    kind: str,
    category: str | None,
) -> dict:
    """Import a hash list file (CSV or ThreatExchange/HMA lines) into a list, created with
    `kind` and `category` if missing; new entries are retro-matched."""
    name = checked_text(name, "list name", 200)
    errors: list[LineError] = []

    def entries() -> Iterator[tuple[str, str, str | None, str | None]]:
        for item in parse_hash_list(text.splitlines()):
            if isinstance(item, ParsedEntry):
                yield item.signal_type, item.hash, item.ref, item.category
            else:
                errors.append(item)

    store.create_list(name, category=category, kind=kind)
    added, duplicates = store.add_entries(name, entries())
    detail = {"added": added, "duplicates": duplicates, "rejected": len(errors)}
    store.audit(who, "lists.import", f"list:{name}", detail)
    return {
        "list": name,
        **detail,
        "rejected_lines": [{"line": e.line, "error": e.message} for e in errors[:20]],
        "retro_job": _queue_retro(conn, settings, name) if added else None,
    }


def set_entries_enabled(
    store: Store,
    conn: redis.Redis,
    settings: Settings,
    who: dict,
    name: str,
    keys: Any,
    enabled: bool,
) -> dict:
    """Disable or re-enable a list's entries by ref or hash; re-enabled ones are
    retro-matched (images scanned while they were off were not matched against them)."""
    if not isinstance(keys, list) or not 0 < len(keys) <= 10_000:
        raise bad_request("keys must be a list of 1 to 10000 entry refs or hashes")
    keys = [checked_text(key, "key", 256) for key in keys]
    keys += [key.lower() for key in keys if key.lower() != key]  # hashes are stored lower-case
    changed = store.set_enabled(name, keys, enabled)
    action = "lists.enable" if enabled else "lists.disable"
    store.audit(who, action, f"list:{name}", {"keys": keys[:100], "changed": changed})
    retro = _queue_retro(conn, settings, name) if enabled and changed else None
    return {"list": name, "enabled": enabled, "changed": changed, "retro_job": retro}


def audit_log(store: Store, who: dict, values: Mapping[str, Any]) -> dict:
    """A page of the audit log (spec.AUDIT filters); reading it is audited too."""
    filters = {k: v for k, v in values.items() if k not in ("page", "per_page")}
    page, per_page = values.get("page", 1), values.get("per_page", 50)
    store.audit(who, "audit.query", None, audited(filters))
    total, entries = store.audit_entries(**filters, offset=(page - 1) * per_page, limit=per_page)
    return {"total": total, "page": page, "per_page": per_page, "entries": entries}


# statistics


def statistics(store: Store, conn: redis.Redis) -> dict:
    """Dashboard figures: queues, scans, matches, and referrals: by state (overdue apart),
    time to removal, and the share of referred reports removed by each day after referral."""
    at = now()
    stats = store.statistics()
    stats["queues"] = queue_depths(conn)
    stats["takedowns"] = {
        **monitor.takedown_stats(store, at),
        "share_removed_by_day": removed_by_day(store.takedown_facts(), at),
    }
    return stats


def queue_depths(conn: redis.Redis) -> dict[str, int] | None:
    """Jobs waiting per RQ queue; None when Redis does not answer."""
    try:
        return {queue.name: queue.count for queue in Queue.all(connection=conn)}
    except redis.RedisError:
        return None


def removed_by_day(facts: list[dict], at: datetime, days: int = REMOVAL_DAYS) -> list[float | None]:
    """Share of referrals removed within d days of referral, for d = 0..days. As in
    monitor.stats, day d counts only referrals whose outcome at d is known (removed, or
    referred more than d days ago); None where none is known yet."""
    shares: list[float | None] = []
    for day in range(days + 1):
        limit = timedelta(days=day)
        known = [f for f in facts if f["removed_at"] or at - f["referred_at"] >= limit]
        removed = sum(
            1 for f in known if f["removed_at"] and f["removed_at"] - f["referred_at"] <= limit
        )
        shares.append(removed / len(known) if known else None)
    return shares


# input checks


def _report_url(value: Any) -> str:
    url = checked_text(value, "url", 8192)
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        raise bad_request(f"url must be an http or https URL with a host, not {url[:80]!r}")
    return url


def _source(value: Any) -> str | None:
    return None if value is None else checked_text(value, "source", 200)


def checked_text(value: Any, name: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise bad_request(f"{name} must be a non-empty string")
    if len(value) > limit:
        raise bad_request(f"{name} is longer than {limit} characters")
    return value.strip()


def _signal_type(value: Any) -> str:
    if not isinstance(value, str) or value not in HASH_COLUMNS:
        raise bad_request(f"signal_type must be one of {', '.join(HASH_COLUMNS)}")
    return value


def _normalize(signal_type: str, value: Any) -> str:
    try:
        return get_signal_type(signal_type).normalize(checked_text(value, "hash", 256))
    except ValueError as e:
        raise bad_request(str(e)) from None


def _hash_types(value: str, hash_type: str | None) -> tuple[tuple[str, ...], str]:
    if hash_type:
        return (hash_type,), _normalize(hash_type, value)
    types = BY_LENGTH.get(len(value.strip()))
    if types is None:
        raise bad_request(
            "hash must be 16 (phash), 32 (md5), 40 (sha1) or 64 (sha256, pdq) hex digits"
        )
    return types, _normalize(types[0], value)


def _near(value: str, near_type: str | None, distance: int | None) -> Near:
    signal_type = near_type or {16: "phash", 64: "pdq"}.get(len(value.strip()))
    if signal_type not in NEAR_TYPES:
        raise bad_request("near takes a phash (16 hex digits) or pdq (64) hash; set near_type")
    if distance is None:
        distance = get_signal_type(signal_type).default_threshold
    if distance > NEAR_BITS[signal_type]:
        raise bad_request(f"{signal_type} has {NEAR_BITS[signal_type]} bits: distance at most that")
    return Near(signal_type, _normalize(signal_type, value), distance)


def audited(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in values.items()}
