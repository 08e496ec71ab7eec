"""A private, disposable place for one browser run.

Each scan gets a directory (on tmpfs where there is one) that holds the browser's
profile, HOME and TMPDIR and nothing else, owned by an unprivileged user when the
service runs as root, so Chromium's own sandbox can stay on. A small launcher
script swaps Playwright's profile directory for ours, records the browser's pid
and drops privileges; the directory and every process of the browser go away when
the scan ends, and :func:`sweep` reclaims them after a worker was killed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from pathlib import Path

_SHM = Path("/dev/shm")
_PREFIX = "scan-"

# POSIX sh: replace Playwright's --user-data-dir with the scan's own, add our features
# to its --disable-features (Chromium heeds only the last such switch), note the pid
# (exec keeps it, and Playwright starts the browser as a process-group leader), then
# exec the browser, as the sandbox user when one is set.
_LAUNCHER = """#!/bin/sh
merged=
for a do
  shift
  case "$a" in
    --user-data-dir=*) a="--user-data-dir=$HOTLINE_SCAN_DIR/profile";;
    --disable-features=*) a="$a,{features}"; merged=1;;
  esac
  set -- "$@" "$a"
done
[ -n "$merged" ] || set -- "$@" "--disable-features={features}"
echo $$ > "$HOTLINE_SCAN_DIR/browser.pid"
exec {drop}"{browser}" "$@"
"""


def sandbox_user() -> tuple[int, int] | None:
    """The uid/gid the browser runs as: ``nobody`` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    return 65534, 65534


def scans_root(home: Path) -> Path:
    """Where scan directories live: tmpfs when the machine has one, so nothing hits a disk."""
    base = _SHM if _SHM.is_dir() and os.access(_SHM, os.W_OK) else home / "tmp"
    root = base / f"hotline-{os.geteuid()}"
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o711)
    return root


class ScanDir:
    """One scan's private directory and browser launcher."""

    def __init__(self, root: Path, browser: str, disable_features: tuple[str, ...]) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-", dir=root))
        for sub in ("profile", "home", "tmp"):
            (self.path / sub).mkdir()
        user = sandbox_user()
        drop = ""
        if user:
            uid, gid = user
            drop = f"setpriv --reuid={uid} --regid={gid} --clear-groups -- "
            for p in [self.path, *self.path.iterdir()]:
                os.chown(p, uid, gid)
        self.launcher = self.path / "launch.sh"
        if not disable_features or not all(f.isalnum() for f in disable_features):
            raise ValueError(f"not Chromium feature names: {disable_features}")
        features = ",".join(disable_features)
        self.launcher.write_text(_LAUNCHER.format(drop=drop, browser=browser, features=features))
        self.launcher.chmod(0o755)

    @property
    def env(self) -> dict[str, str]:
        """Environment for the browser: every path it might write to points inside."""
        home, tmp = str(self.path / "home"), str(self.path / "tmp")
        return {
            "HOTLINE_SCAN_DIR": str(self.path),
            "HOME": home,
            "TMPDIR": tmp,
            "XDG_CONFIG_HOME": home,
            "XDG_CACHE_HOME": home,
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        }

    def kill(self) -> None:
        """Kill the browser's whole process group (renderers, GPU, zygotes)."""
        _kill_group(self.path)

    def remove(self) -> None:
        self.kill()
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> ScanDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def _kill_group(path: Path) -> None:
    try:
        pid = int((path / "browser.pid").read_text().strip())
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def sweep(root: Path) -> int:
    """Kill browsers and remove directories left by scans whose process has died.

    Safe while other workers scan: a directory names the pid that made it, and only
    those whose maker is gone are touched. Returns how many were reclaimed.
    """
    removed = 0
    for path in root.glob(f"{_PREFIX}*-*"):
        try:
            os.kill(int(path.name.split("-")[1]), 0)
            continue
        except ProcessLookupError:
            pass
        except (ValueError, PermissionError):
            continue
        _kill_group(path)
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    return removed
