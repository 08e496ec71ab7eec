"""RQ jobs, queues, worker start-up and the private Redis of the embedded default."""

from .queues import INTAKE, connect, enqueue_scan
from .redis_server import PrivateRedis, RedisUnavailable
from .runner import run_worker

__all__ = ["INTAKE", "PrivateRedis", "RedisUnavailable", "connect", "enqueue_scan", "run_worker"]
