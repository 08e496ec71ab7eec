"""Settings read once from ``HOTLINE_*`` environment variables.

Every knob has a default that works on a fresh machine, so ``make run`` needs no
configuration; the README lists each variable.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from scanner import EgressPolicy, Identity, ScanLimits

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


# A plain desktop Chrome identity: "HeadlessChrome" invites cloaking by the sites we scan.
DEFAULT_USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)


class ConfigError(ValueError):
    """A HOTLINE_* variable holds a value that cannot be used."""


def parse_duration(value: str, name: str = "duration") -> float:
    """Seconds from ``"90"``, ``"1.5s"``, ``"250ms"``, ``"10m"``, ``"6h"`` or ``"2d"``."""
    m = _DURATION.match(value)
    if not m:
        raise ConfigError(f"{name}: {value!r} is not a duration (examples: 30s, 10m, 6h, 2d)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _env(name: str, default: str) -> str:
    return os.environ.get(name, "").strip() or default


def _int(name: str, default: int) -> int:
    raw = _env(name, str(default))
    try:
        return int(raw.replace("_", ""))
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not a whole number") from None


def _seconds(name: str, default: str) -> float:
    return parse_duration(_env(name, default), name)


def _viewport(value: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d{2,5})x(\d{2,5})", value)
    if not m:
        raise ConfigError(f"HOTLINE_VIEWPORT: {value!r} is not WIDTHxHEIGHT (e.g. 1366x768)")
    return int(m.group(1)), int(m.group(2))


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a hotline process needs to know about its environment."""

    home: Path
    database_url: str
    redis_url: str | None
    browser_path: str
    policy: EgressPolicy
    limits: ScanLimits
    identity: Identity
    egress_proxy: str | None
    job_timeout: float

    @property
    def redis_socket(self) -> Path:
        """Unix socket of the private redis-server used when HOTLINE_REDIS_URL is unset."""
        return self.home / "redis" / "redis.sock"

    def with_redis(self, url: str) -> Settings:
        return dataclasses.replace(self, redis_url=url)

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(_env("HOTLINE_HOME", "var")).absolute()
        nets = [n for n in re.split(r"[,\s]+", _env("HOTLINE_ALLOW_NETWORKS", "")) if n]
        try:
            policy = EgressPolicy.from_strings(
                nets, connect_timeout=_seconds("HOTLINE_CONNECT_TIMEOUT", "10s")
            )
        except ValueError as e:
            raise ConfigError(f"HOTLINE_ALLOW_NETWORKS: {e}") from None
        limits = ScanLimits(
            page_timeout=_seconds("HOTLINE_PAGE_TIMEOUT", "30s"),
            scan_timeout=_seconds("HOTLINE_SCAN_TIMEOUT", "90s"),
            max_image_bytes=_int("HOTLINE_MAX_IMAGE_BYTES", 20 * 2**20),
            max_scan_bytes=_int("HOTLINE_MAX_SCAN_BYTES", 200 * 2**20),
            max_images=_int("HOTLINE_MAX_IMAGES", 500),
            max_pixels=_int("HOTLINE_MAX_PIXELS", 50_000_000),
        )
        return cls(
            home=home,
            database_url=_env("HOTLINE_DATABASE_URL", f"sqlite:///{home / 'hotline.db'}"),
            redis_url=os.environ.get("HOTLINE_REDIS_URL", "").strip() or None,
            browser_path=_env("HOTLINE_BROWSER", "/usr/bin/chromium"),
            policy=policy,
            limits=limits,
            identity=Identity(
                user_agent=_env("HOTLINE_USER_AGENT", DEFAULT_USER_AGENT),
                locale=_env("HOTLINE_LOCALE", "en-US"),
                viewport=_viewport(_env("HOTLINE_VIEWPORT", "1366x768")),
            ),
            egress_proxy=os.environ.get("HOTLINE_EGRESS_PROXY", "").strip() or None,
            job_timeout=limits.scan_timeout + 60,
        )
