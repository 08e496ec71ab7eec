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


# Front-loaded re-checks of a referral: +1 h, +4 h, every 6 h to day 3, daily to day 28, weekly.
DEFAULT_RECHECK_SCHEDULE = "1h,3h,6h*11,1d*25,7d"


def parse_schedule(value: str, name: str) -> tuple[float, ...]:
    """Gaps in seconds from ``"1h,3h,6h*11,7d"``: a duration, or one repeated ``*N`` times."""
    gaps: list[float] = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        duration, _, times = item.partition("*")
        if times and not (times.strip().isdigit() and int(times) > 0):
            raise ConfigError(f"{name}: {item!r} repeats a duration a positive number of times")
        seconds = parse_duration(duration, name)
        if seconds <= 0:
            raise ConfigError(f"{name}: {item!r} is not a positive duration")
        gaps += [seconds] * int(times or 1)
    if not gaps:
        raise ConfigError(f"{name}: give at least one duration (example: 1h,3h,6h*11,1d)")
    return tuple(gaps)


def _webhook_urls(value: str) -> tuple[str, ...]:
    urls = tuple(filter(None, (u.strip() for u in value.split(","))))
    for url in urls:
        if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", url):
            raise ConfigError(f"HOTLINE_WEBHOOK_URL: {url!r} is not an http(s) URL")
    return urls


@dataclasses.dataclass(frozen=True)
class TakedownSettings:
    """How referred URLs are re-checked until their removal is confirmed (monitor/)."""

    schedule: tuple[float, ...]  # gaps between checks; the last one repeats
    confirm_spacing: float  # least time between the two negative checks that confirm
    overdue_after: float
    after_removal: tuple[float, ...]  # checks after confirmation, offsets from it
    per_host: int  # concurrent checks of one host
    host_interval: float  # least time between two check starts on one host
    webhook_urls: tuple[str, ...]
    webhook_secret: str | None
    webhook_retries: tuple[float, ...]  # backoff between delivery attempts

    @classmethod
    def from_env(cls) -> TakedownSettings:
        urls = _webhook_urls(_env("HOTLINE_WEBHOOK_URL", ""))
        secret = os.environ.get("HOTLINE_WEBHOOK_SECRET", "").strip() or None
        if urls and not secret:
            raise ConfigError(
                "HOTLINE_WEBHOOK_URL is set but HOTLINE_WEBHOOK_SECRET is not: set a secret "
                "so receivers can verify the X-Hotline-Signature of each notification"
            )
        return cls(
            schedule=parse_schedule(
                _env("HOTLINE_RECHECK_SCHEDULE", DEFAULT_RECHECK_SCHEDULE),
                "HOTLINE_RECHECK_SCHEDULE",
            ),
            confirm_spacing=_seconds("HOTLINE_CONFIRM_SPACING", "6h"),
            overdue_after=_seconds("HOTLINE_OVERDUE_AFTER", "72h"),
            after_removal=parse_schedule(
                _env("HOTLINE_RECHECK_AFTER_REMOVAL", "7d,30d"), "HOTLINE_RECHECK_AFTER_REMOVAL"
            ),
            per_host=max(1, _int("HOTLINE_RECHECK_PER_HOST", 2)),
            host_interval=_seconds("HOTLINE_RECHECK_HOST_INTERVAL", "1s"),
            webhook_urls=urls,
            webhook_secret=secret,
            webhook_retries=parse_schedule(
                _env("HOTLINE_WEBHOOK_RETRIES", "10s,1m,5m,30m,2h"), "HOTLINE_WEBHOOK_RETRIES"
            ),
        )


@dataclasses.dataclass(frozen=True)
class ApiSettings:
    """The HTTP API and web UI (api/)."""

    host: str
    port: int
    session_ttl: float  # seconds a web UI login lasts
    own_list: str  # the hash list that analysts' classifications go into

    @classmethod
    def from_env(cls) -> ApiSettings:
        port = _int("HOTLINE_API_PORT", 8080)
        if not 0 <= port <= 65535:
            raise ConfigError(f"HOTLINE_API_PORT: {port} is not a TCP port (0-65535)")
        return cls(
            host=_env("HOTLINE_API_HOST", "127.0.0.1"),
            port=port,
            session_ttl=_seconds("HOTLINE_SESSION_TTL", "12h"),
            own_list=_env("HOTLINE_OWN_LIST", "hotline-assessed"),
        )


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
    sweep_interval: float
    takedown: TakedownSettings
    api: ApiSettings
    retro_timeout: float  # one retro-matching job: a big list against every stored image

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
            # The scan is hard-limited; hashing and saving after it take seconds.
            job_timeout=limits.scan_timeout + 30,
            sweep_interval=_seconds("HOTLINE_SWEEP_INTERVAL", "30s"),
            takedown=TakedownSettings.from_env(),
            api=ApiSettings.from_env(),
            retro_timeout=_seconds("HOTLINE_RETRO_TIMEOUT", "6h"),
        )
