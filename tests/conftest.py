"""Shared fixtures: a loopback web site, Redis and the HOTLINE_* environment."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from workers import PrivateRedis

from .helpers import ROOT, Site, encode, photo, run_hotline

__all__ = ["ROOT", "Site", "encode", "photo", "run_hotline"]


@pytest.fixture
def site() -> Iterator[Site]:
    s = Site().start()
    yield s
    s.stop()


def _tcp_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


@pytest.fixture(scope="session")
def _redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The machine's Redis when it runs (db HOTLINE_TEST_REDIS_DB or 13), else a private
    redis-server."""
    if _tcp_open("127.0.0.1", 6379):
        yield f"redis://127.0.0.1:6379/{os.environ.get('HOTLINE_TEST_REDIS_DB', '13')}"
        return
    print("\nno Redis on 127.0.0.1:6379: starting a private redis-server for the tests")
    with PrivateRedis(tmp_path_factory.mktemp("redis") / "redis.sock") as private:
        yield private.url


@pytest.fixture
def redis_url(_redis_server: str) -> str:
    """A Redis database emptied for this test."""
    redis.Redis.from_url(_redis_server).flushdb()
    return _redis_server


@pytest.fixture
def hotline_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """HOTLINE_* for a test: its own home and SQLite, loopback 127.0.0.1 allowed (only)."""
    env = {
        "HOTLINE_HOME": str(tmp_path / "home"),
        "HOTLINE_ALLOW_NETWORKS": "127.0.0.1/32",
        "HOTLINE_PAGE_TIMEOUT": "15s",
        "HOTLINE_SCAN_TIMEOUT": "60s",
        "HOTLINE_API_PORT": "0",  # `hotline up` in a test must not need a fixed port
    }
    for k in [k for k in os.environ if k.startswith("HOTLINE_")]:
        monkeypatch.delenv(k)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env
