"""The ``hotline`` command: thin wrappers that turn arguments into calls and results
into text or JSON. Exit status 2 means the command could not do what was asked, and
the message on stderr says what to do."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from matcher import LineError, ParsedEntry, hash_file, parse_hash_list
from store import ListNotFound, ReportNotFound, Store

from .config import ConfigError, Settings

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".ico"}


class Failure(Exception):
    """A command failed for a reason the user can act on."""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.command in ("up", "worker") else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = Settings.from_env()
        return args.func(args, settings)
    except (Failure, ConfigError, ReportNotFound, ListNotFound) as e:
        print(f"hotline: {e}", file=sys.stderr)
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

    c = sub.add_parser("worker", help="run queued scans")
    c.add_argument("--burst", action="store_true", help="stop when the queue is empty")
    c.set_defaults(func=_worker)

    c = sub.add_parser("report", help="show a report with its scans, images and matches")
    c.add_argument("report_id", type=int)
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=_report)

    c = sub.add_parser("lists", help="hash lists: show, import, add images")
    c.set_defaults(func=_lists_show)
    lsub = c.add_subparsers(dest="lists_command")
    i = lsub.add_parser("import", help="import a CSV or ThreatExchange/HMA hash file")
    i.add_argument("name")
    i.add_argument("file", type=Path)
    i.add_argument("--category")
    i.add_argument("--kind", choices=["known", "allow"], default="known")
    i.set_defaults(func=_lists_import)
    a = lsub.add_parser("add-images", help="hash every image under DIR into the list")
    a.add_argument("name")
    a.add_argument("dir", type=Path)
    a.add_argument("--category")
    a.add_argument("--kind", choices=["known", "allow"], default="known")
    a.set_defaults(func=_lists_add_images)
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

    doc = asyncio.run(intake.scan(args.url, settings, intake.load_index(_store(settings))))
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
    run_worker(settings, burst=args.burst)
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
    for img in doc["images"]:
        marks = ", ".join(
            f"{m['list']}/{m['signal_type']} d={m['distance']}≤{m['threshold']}"
            + (f" [{m['category']}]" if m["category"] else "")
            for m in img["matches"]
        )
        print(
            f"{indent}  {'MATCH' if marks else 'image'} {img['url']}  phash {img['phash']}"
            + (f"  ← {marks}" if marks else "")
        )
    for b in doc["blocked"]:
        print(f"{indent}  blocked {b['url']}: {b['reason']}")
    print(f"{indent}  {len(doc['images'])} images, matched: {'yes' if doc['matched'] else 'no'}")


def _lists_show(args: argparse.Namespace, settings: Settings) -> int:
    lists = _store(settings).lists()
    if not lists:
        print("no hash lists yet: `hotline lists import NAME FILE` adds one")
    for hl in lists:
        counts = ", ".join(f"{t} {n}" for t, n in sorted(hl["entries"].items())) or "empty"
        print(
            f"{hl['name']}  ({hl['kind']}, category {hl['category'] or '-'}, "
            f"version {hl['version']}): {counts}"
        )
    return 0


def _import(
    settings: Settings, args: argparse.Namespace, entries: Iterator[tuple[str, str, Any, Any]]
) -> tuple[int, int]:
    store = _store(settings)
    store.create_list(args.name, category=args.category, kind=args.kind)
    return store.add_entries(args.name, entries)


def _lists_import(args: argparse.Namespace, settings: Settings) -> int:
    if not args.file.is_file():
        raise Failure(f"{args.file}: no such file")
    errors: list[LineError] = []

    def entries(lines: Iterator[str]) -> Iterator[tuple[str, str, Any, Any]]:
        for n, item in enumerate(parse_hash_list(lines), 1):
            if isinstance(item, ParsedEntry):
                yield item.signal_type, item.hash, item.ref, item.category
            else:
                errors.append(item)
            if n % 100_000 == 0:
                print(f"  … {n:,} lines read", file=sys.stderr, flush=True)

    with args.file.open(encoding="utf-8", errors="replace", newline="") as f:
        added, dup = _import(settings, args, entries(f))
    for e in errors[:20]:
        print(f"  line {e.line}: {e.message}", file=sys.stderr)
    if len(errors) > 20:
        print(f"  … and {len(errors) - 20} more rejected lines", file=sys.stderr)
    print(f"{args.name}: {added} added, {dup} already present, {len(errors)} rejected")
    return 0 if added or dup or not errors else 2


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
            for signal_type in ("md5", "sha1", "sha256", "phash", "dhash", "pdq"):
                value = getattr(h, signal_type)
                if value and not (signal_type == "pdq" and (h.pdq_quality or 0) < 50):
                    yield signal_type, value, ref, None
            if n % 100 == 0:
                print(f"  … {n}/{len(files)} images hashed", file=sys.stderr, flush=True)

    added, dup = _import(settings, args, entries())
    for s in skipped:
        print(f"  not decodable, exact hashes only: {s}", file=sys.stderr)
    print(f"{args.name}: {len(files)} images hashed, {added} hashes added, {dup} already present")
    return 0
