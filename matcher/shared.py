"""Indexes published on disk, one directory per lists version, mapped by every process.

The first process that needs a version builds it (under a file lock, so two workers never
build the same one) into a temporary directory and renames that into place: readers see
a whole index or none. Everyone else maps the arrays read-only, so N workers hold one copy
in the page cache. Old versions are removed once a newer one is published; a process
that still maps one keeps it until it lets go (Linux frees the files then).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from matcher.index import Index

log = logging.getLogger(__name__)

_VERSION = re.compile(r"[0-9A-Za-z_.-]{1,64}")
_TEMPORARY = ".tmp-"


class SharedIndex:
    """The published indexes under `root`; keeps this process's current one mapped."""

    def __init__(self, root: Path, *, keep: int = 2) -> None:
        self.root = root
        self.keep = keep  # versions left on disk, the newest included
        self._current: Index | None = None

    def get(self, version: str, build: Callable[[], Index]) -> Index:
        """The index of `version`: already mapped, else mapped from disk, else made by
        `build` (which may return a newer version: it is published under its own).

        Cheap when nothing changed, so callers ask at the start of every job."""
        if not _VERSION.fullmatch(version):
            raise ValueError(f"bad index version {version!r}")
        if self._current is not None and self._current.version == version:
            return self._current
        try:
            index = self._load(version) or self._build(version, build)
        except FileNotFoundError:  # removed between our look and our load: a newer exists
            index = self._build(version, build)
        self._current = index
        return index

    def versions(self) -> list[str]:
        """Published versions, newest first."""
        found = [p for p in self._dirs() if not p.name.startswith(_TEMPORARY)]
        return [p.name for p in sorted(found, key=_mtime, reverse=True)]

    def _load(self, version: str) -> Index | None:
        """The published index of `version`; None if there is none (or one of another
        format, left by an older release: it is rebuilt)."""
        directory = self.root / version
        if not (directory / "manifest.json").is_file():
            return None
        try:
            return Index.load(directory)
        except ValueError:
            return None

    def _build(self, version: str, build: Callable[[], Index]) -> Index:
        with self._lock():
            if existing := self._load(version):  # another process built it while we waited
                return existing
            started = time.monotonic()
            built = build()
            label = built.version or version
            if not _VERSION.fullmatch(label):
                raise ValueError(f"bad index version {label!r}")
            target = self.root / label
            if self._load(label) is None:
                shutil.rmtree(target, ignore_errors=True)  # of an older format, or half-made
                temporary = self.root / f"{_TEMPORARY}{label}-{os.getpid()}"
                built.save(temporary)
                os.rename(temporary, target)
            log.info(
                "match index %s: %d entries, %.0f MB, built in %.1f s",
                label,
                len(built),
                built.nbytes() / 1e6,
                time.monotonic() - started,
            )
            self._collect(keep=label)
            return Index.load(target)  # mapped: the built copy's memory goes back

    def _collect(self, keep: str) -> None:
        """Remove temporary directories (we hold the lock: nobody is writing one) and all
        but the newest versions."""
        for directory in self._dirs():
            if directory.name.startswith(_TEMPORARY):
                shutil.rmtree(directory, ignore_errors=True)
        old = [v for v in self.versions() if v != keep][max(0, self.keep - 1) :]
        for version in old:
            shutil.rmtree(self.root / version, ignore_errors=True)

    def _dirs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [p for p in self.root.iterdir() if p.is_dir()]

    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0
