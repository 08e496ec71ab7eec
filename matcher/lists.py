"""Parse hash-list files as they arrive from partners.

Two forms, told apart by the first line that is neither blank nor a # comment:
- CSV whose header names at least `signal_type` and `hash` (and optionally `id`,
  `category`; any order, any case, other columns ignored);
- ThreatExchange / HMA local-file form: `<signal_type> <hash>` per line.

Parsing streams: one line (or one quoted CSV record) is held at a time, so a list of
millions of lines is parsed in bounded memory. Duplicates are left to the store.
`write_hash_list` writes either form back, as parse_hash_list reads it.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TextIO

from matcher.signals import get_signal_type, preview


@dataclass
class ParsedEntry:
    line: int
    signal_type: str
    hash: str
    ref: str | None
    category: str | None


@dataclass
class LineError:
    line: int
    message: str


def parse_hash_list(lines: Iterable[str]) -> Iterator[ParsedEntry | LineError]:
    """Yield each entry, or an error for a bad line (1-based line numbers), in order."""
    lines = iter(lines)
    for number, line in enumerate(lines, 1):
        first = line.lstrip("\ufeff").strip() if number == 1 else line.strip()
        if first and not first.startswith("#"):
            break
    else:
        return
    if "," in first:
        yield from _parse_csv(first, number, lines)
    else:
        yield from _parse_hma(itertools.chain([(number, first)], enumerate(lines, number + 1)))


def _parse_hma(numbered: Iterable[tuple[int, str]]) -> Iterator[ParsedEntry | LineError]:
    for number, line in numbered:
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        fields = text.split()
        if len(fields) != 2:
            yield LineError(number, f"expected '<signal_type> <hash>', got {preview(text)}")
        else:
            yield _entry(number, fields[0], fields[1], None, None)


def _parse_csv(
    header: str, header_line: int, rest: Iterator[str]
) -> Iterator[ParsedEntry | LineError]:
    names = [name.strip().lower() for name in next(csv.reader([header]))]
    if "signal_type" not in names or "hash" not in names:
        message = f"CSV header needs signal_type and hash columns, got {preview(header)}"
        yield LineError(header_line, message)
        return
    column = {
        name: names.index(name)
        for name in ("signal_type", "hash", "id", "category")
        if name in names
    }
    reader = csv.reader(rest)
    while True:
        start = header_line + reader.line_num + 1  # a quoted field may span lines
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield LineError(start, f"malformed CSV: {exc}")
            continue
        if not any(field.strip() for field in row):
            continue
        if len(row) <= max(column.values()):
            yield LineError(start, f"expected {len(names)} columns, got {len(row)}")
            continue
        ref, category = (
            row[column[name]].strip() or None if name in column else None
            for name in ("id", "category")
        )
        yield _entry(start, row[column["signal_type"]], row[column["hash"]], ref, category)


def _entry(
    line: int, signal_type: str, value: str, ref: str | None, category: str | None
) -> ParsedEntry | LineError:
    try:
        signal = get_signal_type(signal_type)
        return ParsedEntry(line, signal.name, signal.normalize(value), ref, category)
    except ValueError as exc:
        return LineError(line, str(exc))


def write_hash_list(out: TextIO, entries: Iterable[Mapping[str, str | None]], form: str) -> int:
    """Write entries (signal_type, hash, ref, category) as CSV with the header
    signal_type,hash,id,category, or in the HMA form (hashes only); returns how many."""
    if form not in ("csv", "hma"):
        raise ValueError(f"unknown list form {form!r}: csv or hma")
    writer = csv.writer(out, lineterminator="\n")
    if form == "csv":
        writer.writerow(("signal_type", "hash", "id", "category"))
    count = 0
    for e in entries:
        if form == "csv":
            writer.writerow((e["signal_type"], e["hash"], e["ref"] or "", e["category"] or ""))
        else:
            out.write(f"{e['signal_type']} {e['hash']}\n")
        count += 1
    return count
