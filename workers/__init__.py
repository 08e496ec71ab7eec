"""RQ jobs, queues, worker start-up and the private Redis of the embedded default."""

from .queues import (
    INTAKE,
    QUEUES,
    RECHECK,
    RETRO,
    connect,
    enqueue_retro,
    enqueue_scan,
    rescan,
)
from .redis_server import PrivateRedis, RedisUnavailable
from .runner import run_worker

__all__ = [
    "INTAKE",
    "QUEUES",
    "RECHECK",
    "RETRO",
    "PrivateRedis",
    "RedisUnavailable",
    "connect",
    "enqueue_retro",
    "enqueue_scan",
    "rescan",
    "run_worker",
]
