"""A private redis-server for the embedded default (no HOTLINE_REDIS_URL).

It listens on a unix socket under HOTLINE_HOME only (no TCP port), keeps nothing on
disk, and lives as long as the ``hotline`` process that started it. Reports are in
the database before they are queued, so a fresh private Redis loses nothing: start-up
re-enqueues what was waiting.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis


class RedisUnavailable(RuntimeError):
    """No Redis could be reached or started."""


class PrivateRedis:
    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 10.0) -> PrivateRedis:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RedisUnavailable(
                "redis-server is not installed: run `make run` (it installs it) or set "
                "HOTLINE_REDIS_URL to an existing Redis"
            )
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        self.socket.parent.chmod(0o700)
        if _answers(self.url):
            raise RedisUnavailable(
                f"a private Redis already answers on {self.socket}: is another `hotline up` "
                "running with the same HOTLINE_HOME?"
            )
        self.socket.unlink(missing_ok=True)
        log = self.socket.parent / "redis.log"
        self.proc = subprocess.Popen(
            [
                exe,
                "--port",
                "0",
                "--unixsocket",
                str(self.socket),
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.socket.parent),
                "--logfile",
                str(log),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RedisUnavailable(
                    f"redis-server exited with {self.proc.returncode}; see {log}"
                )
            if _answers(self.url):
                return self
            time.sleep(0.05)
        self.stop()
        raise RedisUnavailable(f"redis-server did not answer within {timeout:g} s; see {log}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.socket.unlink(missing_ok=True)

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except (redis.RedisError, OSError):
        return False
