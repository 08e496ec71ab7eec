"""The ``hotline`` command: thin wrappers that turn arguments into calls and results
into text or JSON. Exit status 2 means the command could not do what was asked, and
the message on stderr says what to do."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from sqlalchemy.exc import SQLAlchemyError

from matcher import (
    LIST_KINDS,
    LineError,
    ParsedEntry,
    check_thresholds,
    hash_file,
    parse_hash_list,
    write_hash_list,
)
from store import ListInUse, ListNotFound, ReportNotFound, Store

from .config import ConfigError, Settings, parse_duration
from .takedown import parse_time, stats_text, takedown_lines

MAX_SHOWN = 20  # rejected lines printed by an import
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".ico"}


class Failure(Exception):
    """A command failed for a reason the user can act on."""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.command in ("up", "worker", "scheduler") else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        settings = Settings.from_env()
        return args.func(args, settings)
    except (Failure, ConfigError, ReportNotFound, ListNotFound) as e:
        print(f"hotline: {e}", file=sys.stderr)
        return 2
    except SQLAlchemyError as e:
        print(
            f"hotline: the database is unreachable or failed ({str(e).splitlines()[0]}); "
            "nothing was changed. Check HOTLINE_DATABASE_URL and try again.",
            file=sys.stderr,
        )
        return 2
    except redis.ConnectionError as e:
        print(
            f"hotline: cannot reach Redis ({e}). Start the service with `hotline up` "
            "or set HOTLINE_REDIS_URL.",
            file=sys.stderr,
        )
        return 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hotline", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("up", help="run the service: Redis (private by default) and workers")
    c.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    c.set_defaults(func=_up)

    c = sub.add_parser("scan", help="scan a URL now, in this process, without the queue")
    c.add_argument("url")
    c.add_argument("--json", action="store_true", help="print the scan document as JSON")
    c.set_defaults(func=_scan)

    c = sub.add_parser("submit", help="store a reported URL and queue its scan")
    c.add_argument("url")
    c.add_argument("--source", help="where the report came from (form, partner, …)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=_submit)

    c = sub.add_parser("worker", help="run queued jobs")
    c.add_argument("--burst", action="store_true", help="stop when the queues are empty")
    c.add_argument(
        "--queues",
        default="intake,retro,recheck",
        help="comma-separated queues, highest priority first (default intake,retro,recheck)",
    )
    c.set_defaults(func=_worker)

    c = sub.add_parser("status", help="database, Redis, queues and workers at a glance")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=_status)

    c = sub.add_parser("retry", help="queue reports again (e.g. after their job failed)")
    c.add_argument("report_ids", type=int, nargs="*")
    c.add_argument("--failed", action="store_true", help="every report in state failed")
    c.set_defaults(func=_retry)

    c = sub.add_parser("report", help="show a report with its scans, images and matches")
    c.add_argument("report_id", type=int)
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=_report)

    c = sub.add_parser("refer", help="refer a report for takedown and re-check it until removed")
    c.add_argument("report_id", type=int)
    c.add_argument("--to", required=True, help="who was told: hosting provider, hotline, police")
    c.add_argument("--notice-sent-at", help="when the notice went out (ISO time; UTC if no zone)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=_refer)

    c = sub.add_parser("scheduler", help="hand due takedown checks to the recheck queue")
    c.add_argument("--interval", default="1s", help="time between passes (default 1s)")
    c.set_defaults(func=_scheduler)

    c = sub.add_parser("stats", help="statistics")
    ssub = c.add_subparsers(dest="stats_command", required=True)
    t = ssub.add_parser("takedown", help="removal times and shares, per party and network")
    t.add_argument("--since", help="referrals since this ISO time, or this long ago (30d)")
    t.add_argument("--party", help="only referrals to this party")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=_stats_takedown)

    c = sub.add_parser("lists", help="hash lists: show, import, export, enable/disable, …")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=_lists_show)
    lsub = c.add_subparsers(dest="lists_command")
    i = lsub.add_parser("import", help="import a CSV or ThreatExchange/HMA hash file")
    i.add_argument("name")
    i.add_argument("file", type=Path)
    a = lsub.add_parser("add-images", help="hash every image under DIR into the list")
    a.add_argument("name")
    a.add_argument("dir", type=Path)
    for adding in (i, a):
        adding.add_argument("--category", help="category of a new list")
        adding.add_argument(
            "--kind",
            choices=LIST_KINDS,
            help="of a new list: known (matches are reported, the default) or allow "
            "(known-benign hashes: an image matching one has its matches suppressed)",
        )
        _threshold_option(adding)
    i.set_defaults(func=_lists_import)
    a.set_defaults(func=_lists_add_images)
    t = lsub.add_parser("set", help="change a list's thresholds")
    t.add_argument("name")
    _threshold_option(t)
    t.set_defaults(func=_lists_set)
    for action in ("disable", "enable"):
        e = lsub.add_parser(action, help=f"{action} entries, named by id or hash")
        e.add_argument("name")
        e.add_argument("keys", nargs="*", metavar="ID_OR_HASH")
        e.add_argument("--from", dest="keys_file", type=Path, help="ids or hashes, one a line")
        e.set_defaults(func=_lists_enable, enabled=action == "enable")
    x = lsub.add_parser("export", help="write the list's enabled entries as import reads them")
    x.add_argument("name")
    x.add_argument("--format", choices=["csv", "hma"], default="csv")
    x.add_argument("--output", type=Path, help="file to write (default: standard output)")
    x.set_defaults(func=_lists_export)
    d = lsub.add_parser("delete", help="delete a list and its entries")
    d.add_argument("name")
    d.add_argument(
        "--with-matches", action="store_true", help="also delete its matches from reports"
    )
    d.set_defaults(func=_lists_delete)
    r = lsub.add_parser("retro", help="retro-match the list's new entries now, in this process")
    r.add_argument("name")
    r.set_defaults(func=_lists_retro)

    c = sub.add_parser("serve", help="run the HTTP API and web UI (HOTLINE_API_HOST:PORT)")
    c.set_defaults(func=_serve)

    c = sub.add_parser("tokens", help="API tokens: list, create, revoke")
    c.set_defaults(func=_tokens_show)
    tsub = c.add_subparsers(dest="tokens_command")
    t = tsub.add_parser("create", help="create a token; its secret is printed once")
    t.add_argument("--role", required=True, choices=["intake", "analyst", "admin"])
    t.add_argument("--name", required=True, help="who or what uses it")
    t.set_defaults(func=_tokens_create)
    t = tsub.add_parser("revoke", help="revoke a token (and end its web sessions)")
    t.add_argument("token_id", type=int)
    t.set_defaults(func=_tokens_revoke)
    return p


def _store(settings: Settings) -> Store:
    store = Store(settings.database_url)
    store.migrate()
    return store


def _print_json(doc: Any) -> None:
    print(json.dumps(doc, indent=2, ensure_ascii=False, default=str))


def _up(args: argparse.Namespace, settings: Settings) -> int:
    from .service import up

    return up(settings, args.workers)


def _scan(args: argparse.Namespace, settings: Settings) -> int:
    from . import intake
    from .matching import current_index

    index = current_index(settings, _store(settings))
    doc = asyncio.run(intake.scan(args.url, settings, index))
    if args.json:
        _print_json(doc)
    else:
        _print_scan(doc)
    return 0


def _submit(args: argparse.Namespace, settings: Settings) -> int:
    from workers import connect, enqueue_scan

    store = _store(settings)
    report_id = store.add_report(args.url, args.source)
    try:
        enqueue_scan(connect(settings), settings, report_id)
        queued = True
    except redis.ConnectionError:
        queued = False
    if args.json:
        print(json.dumps({"report_id": report_id, "queued": queued}))
    else:
        print(f"report {report_id} stored" + (" and queued" if queued else ""))
    if not queued:
        print(
            f"hotline: report {report_id} is safe in the database but no Redis answered; "
            "`hotline up` queues it when it starts",
            file=sys.stderr,
        )
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from workers import run_worker

    _store(settings)
    run_worker(settings, queues=[q for q in args.queues.split(",") if q], burst=args.burst)
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from .status import gather, render

    status = gather(settings)
    if args.json:
        _print_json(status)
    else:
        print(render(status))
    return 0 if status["ok"] else 1


def _retry(args: argparse.Namespace, settings: Settings) -> int:
    from workers import connect, rescan

    store = _store(settings)
    ids = list(args.report_ids) + (store.reports_in_state("failed") if args.failed else [])
    if not ids:
        raise Failure("name report ids, or --failed for every failed report")
    conn = connect(settings)
    for report_id in ids:
        store.get_report(report_id)  # ReportNotFound before anything changes
        store.set_report_state(report_id, "queued")
        rescan(conn, settings, report_id)
    print(f"{len(ids)} report(s) queued again")
    return 0


def _report(args: argparse.Namespace, settings: Settings) -> int:
    report = _store(settings).get_report(args.report_id)
    if args.json:
        _print_json(report)
        return 0
    print(f"report {report['id']}  {report['state']}  {report['url']}")
    print(f"  received {report['received_at']}  source {report['source'] or '-'}")
    for scan in report["scans"]:
        _print_scan(scan, indent="  ")
    if report["takedown"]:
        print("\n".join("  " + line for line in takedown_lines(report["takedown"])))
    return 0


def _refer(args: argparse.Namespace, settings: Settings) -> int:
    import monitor

    notice = None
    if args.notice_sent_at:
        notice = parse_time(args.notice_sent_at, "--notice-sent-at", datetime.now(UTC))
    store = _store(settings)
    try:
        takedown = monitor.refer(store, args.report_id, args.to, notice, settings=settings)
    except ReportNotFound:
        raise Failure(f"there is no report {args.report_id}: check the id") from None
    except ValueError as e:
        raise Failure(str(e)) from None
    if args.json:
        _print_json(takedown)
        return 0
    print(f"report {args.report_id} referred to {takedown['party']}")
    if not takedown["evidence"]["hashes"]:
        print("  its scan saw no images: while the page answers, it counts as live")
    print(
        f"  first check {takedown['next_check_at']}; `hotline scheduler` (or `hotline up`) runs it"
    )
    return 0


def _scheduler(args: argparse.Namespace, settings: Settings) -> int:
    from monitor import Scheduler
    from workers import connect

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    interval = parse_duration(args.interval, "--interval")
    Scheduler(_store(settings), connect(settings), settings).run(stop, interval=interval)
    return 0


def _stats_takedown(args: argparse.Namespace, settings: Settings) -> int:
    from monitor import takedown_stats

    now = datetime.now(UTC)
    since = parse_time(args.since, "--since", now) if args.since else None
    stats = takedown_stats(_store(settings), now, since=since, party=args.party)
    if args.json:
        _print_json(stats)
    else:
        print(stats_text(stats))
    return 0


def _print_scan(doc: dict[str, Any], indent: str = "") -> None:
    err = doc["error"]
    print(
        f"{indent}scan {doc.get('id', '')} {doc['status']}"
        + (f" ({err['kind']}: {err['message']})" if err else "")
        + f"  HTTP {doc['http_status']}  {doc['final_url'] or doc['url']}"
        + f"  server {doc['server_ip'] or '-'}"
    )
    for hop in doc["redirects"]:
        print(f"{indent}  redirect {hop['status']} {hop['url']}")
    if wall := doc["meta"].get("challenge"):
        print(f"{indent}  challenge page ({wall}): the site showed a bot check, not its content")
    for img in doc["images"]:
        marks = ", ".join(map(_match_text, img["matches"]))
        allowed = ", ".join(map(_match_text, img.get("allowed", [])))
        label = "MATCH" if marks else "allowed" if allowed else "image"
        print(
            f"{indent}  {label} {img['url']}  phash {img['phash']}"
            + (f"  ← {marks}" if marks else "")
            + (f"  (allow list: {allowed})" if allowed else "")
        )
    for b in doc["blocked"]:
        print(f"{indent}  blocked {b['url']}: {b['reason']}")
    print(f"{indent}  {len(doc['images'])} images, matched: {'yes' if doc['matched'] else 'no'}")


def _match_text(m: dict[str, Any]) -> str:
    """One match for a terminal; RETRO marks one found after the scan, as a list grew."""
    return (
        f"{m['list']}/{m['signal_type']} {m['entry_id']} d={m['distance']}≤{m['threshold']}"
        + (f" [{m['category']}]" if m["category"] else "")
        + (" RETRO" if m["retro"] else "")
    )


def _threshold_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="TYPE=BITS",
        help="the list's own match threshold for a signal type, e.g. phash=8 (repeatable)",
    )


def _thresholds(args: argparse.Namespace) -> dict[str, int]:
    parsed = {}
    for item in args.threshold:
        name, _, bits = item.partition("=")
        if not bits.strip().isdigit():
            raise Failure(f"--threshold {item!r}: write TYPE=BITS, e.g. phash=8")
        parsed[name] = int(bits)
    try:
        return check_thresholds(parsed)
    except ValueError as e:
        raise Failure(f"--threshold: {e}") from None


def _lists_show(args: argparse.Namespace, settings: Settings) -> int:
    lists = _store(settings).lists()
    if args.json:
        _print_json(lists)
        return 0
    if not lists:
        print("no hash lists yet: `hotline lists import NAME FILE` adds one")
    for hl in lists:
        counts = ", ".join(f"{t} {n}" for t, n in sorted(hl["entries"].items())) or "empty"
        own = ", ".join(f"{t} ≤{n}" for t, n in sorted(hl["thresholds"].items()))
        print(
            f"{hl['name']}  ({hl['kind']}, category {hl['category'] or '-'}, "
            f"version {hl['version']}{', thresholds ' + own if own else ''}): {counts}"
        )
    return 0


def _import(
    settings: Settings, args: argparse.Namespace, entries: Iterator[tuple[str, str, Any, Any]]
) -> tuple[int, int]:
    """Create or check the list, set its thresholds, add the entries, queue retro-matching."""
    thresholds = _thresholds(args)
    store = _store(settings)
    store.create_list(args.name, category=args.category, kind=args.kind or "known")
    kind = store.get_list(args.name)["kind"]
    if args.kind and args.kind != kind:
        raise Failure(f"list {args.name!r} is a {kind} list, not {args.kind}")
    if thresholds:
        store.set_thresholds(args.name, thresholds)
    added, duplicates = store.add_entries(args.name, entries)
    if added:
        _queue_retro(settings, args.name)
    return added, duplicates


def _queue_retro(settings: Settings, name: str) -> None:
    """Retro-matching of the new entries; without Redis they wait in the database, and the
    service queues them when it runs."""
    from workers import connect, enqueue_retro

    try:
        enqueue_retro(connect(settings), settings, name)
        print(f"{name}: retro-matching of the stored images queued", file=sys.stderr)
    except redis.ConnectionError:
        print(
            f"{name}: no Redis answered; the new entries are retro-matched once `hotline up` "
            f"runs (or now: `hotline lists retro {name}`)",
            file=sys.stderr,
        )


def _lists_import(args: argparse.Namespace, settings: Settings) -> int:
    if not args.file.is_file():
        raise Failure(f"{args.file}: no such file")
    errors: list[LineError] = []  # the first MAX_SHOWN, so a file of garbage stays cheap
    rejected = 0

    def entries(lines: Iterator[str]) -> Iterator[tuple[str, str, Any, Any]]:
        nonlocal rejected
        for n, item in enumerate(parse_hash_list(lines), 1):
            if isinstance(item, ParsedEntry):
                yield item.signal_type, item.hash, item.ref, item.category
            else:
                rejected += 1
                if len(errors) < MAX_SHOWN:
                    errors.append(item)
            if n % 100_000 == 0:
                print(f"  … {n:,} lines read", file=sys.stderr, flush=True)

    with args.file.open(encoding="utf-8", errors="replace", newline="") as f:
        added, dup = _import(settings, args, entries(f))
    for e in errors:
        print(f"  line {e.line}: {e.message}", file=sys.stderr)
    if rejected > len(errors):
        print(f"  … and {rejected - len(errors)} more rejected lines", file=sys.stderr)
    print(f"{args.name}: {added} added, {dup} already present, {rejected} rejected")
    return 0 if added or dup or not rejected else 2


def _lists_add_images(args: argparse.Namespace, settings: Settings) -> int:
    if not args.dir.is_dir():
        raise Failure(f"{args.dir}: not a directory")
    files = sorted(p for p in args.dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    skipped: list[str] = []

    def entries() -> Iterator[tuple[str, str, Any, Any]]:
        for n, path in enumerate(files, 1):
            h = hash_file(path)
            if h.error:
                skipped.append(f"{path}: {h.error[1]}")
            ref = str(path.relative_to(args.dir))
            for signal_type, value in h.main_hashes().items():
                yield signal_type, value, ref, None
            if n % 100 == 0:
                print(f"  … {n}/{len(files)} images hashed", file=sys.stderr, flush=True)

    added, dup = _import(settings, args, entries())
    for s in skipped:
        print(f"  not decodable, exact hashes only: {s}", file=sys.stderr)
    print(f"{args.name}: {len(files)} images hashed, {added} hashes added, {dup} already present")
    return 0


def _lists_set(args: argparse.Namespace, settings: Settings) -> int:
    thresholds = _thresholds(args)
    if not thresholds:
        raise Failure("nothing to set: give --threshold TYPE=BITS")
    changed = _store(settings).set_thresholds(args.name, thresholds)
    print(f"{args.name}: thresholds {'changed' if changed else 'unchanged'}")
    return 0


def _lists_enable(args: argparse.Namespace, settings: Settings) -> int:
    keys = list(args.keys)
    if args.keys_file:
        with args.keys_file.open(encoding="utf-8", errors="replace") as f:
            keys += [line.strip() for line in f if line.strip()]
    if not keys:
        raise Failure("name the entries: ids or hashes, or --from FILE")
    # Hashes are stored normalised (lower-case hex); ids are matched as given.
    keys += [k.lower() for k in keys if k.lower() != k]
    changed = _store(settings).set_enabled(args.name, keys, args.enabled)
    print(f"{args.name}: {changed} entries {'enabled' if args.enabled else 'disabled'}")
    if changed and args.enabled:
        _queue_retro(settings, args.name)
    return 0


def _lists_export(args: argparse.Namespace, settings: Settings) -> int:
    entries = _store(settings).export_entries(args.name)
    out = args.output.open("w", encoding="utf-8", newline="") if args.output else sys.stdout
    try:
        count = write_hash_list(out, entries, args.format)
    finally:
        if args.output:
            out.close()
    print(f"{args.name}: {count} entries exported", file=sys.stderr)
    return 0


def _lists_delete(args: argparse.Namespace, settings: Settings) -> int:
    try:
        gone = _store(settings).delete_list(args.name, with_matches=args.with_matches)
    except ListInUse as e:
        raise Failure(f"{e} (--with-matches)") from None
    print(
        f"{args.name}: deleted with {gone['entries']} entries"
        + (f" and {gone['matches']} matches in {gone['scans']} scans" if gone["matches"] else "")
    )
    return 0


def _lists_retro(args: argparse.Namespace, settings: Settings) -> int:
    from .matching import retro_match

    done = retro_match(settings, _store(settings), args.name)
    print(
        f"{args.name}: {done['entries']} new entries against {done['images']} stored images: "
        f"{done['matches']} new matches"
    )
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from api import serve

    serve(settings)
    return 0


def _tokens_show(args: argparse.Namespace, settings: Settings) -> int:
    tokens = _store(settings).tokens()
    if not tokens:
        print("no tokens yet: `hotline tokens create --role admin --name NAME` makes the first")
    for t in tokens:
        revoked = f"  revoked {t['revoked_at']}" if t["revoked_at"] else ""
        print(f"{t['id']}  {t['role']:<8} {t['name']}  created {t['created_at']}{revoked}")
    return 0


def _tokens_create(args: argparse.Namespace, settings: Settings) -> int:
    store = _store(settings)
    try:
        token_id, secret = store.create_token(args.name, args.role)
    except ValueError as e:
        raise Failure(str(e)) from None
    detail = {"name": args.name, "role": args.role}
    store.audit(_cli_actor(), "tokens.create", f"token:{token_id}", detail)
    print(secret)
    print(
        f"token {token_id} ({args.role}) for {args.name}: keep it secret, it is not shown again",
        file=sys.stderr,
    )
    return 0


def _tokens_revoke(args: argparse.Namespace, settings: Settings) -> int:
    store = _store(settings)
    if not store.revoke_token(args.token_id):
        raise Failure(f"no active token has id {args.token_id} (`hotline tokens` lists them)")
    store.audit(_cli_actor(), "tokens.revoke", f"token:{args.token_id}")
    print(f"token {args.token_id} revoked")
    return 0


def _cli_actor() -> dict:
    """Who the audit log names for a command run on the server itself."""
    import getpass

    return {"name": f"cli:{getpass.getuser()}", "role": "admin"}
