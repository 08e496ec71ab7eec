"""Takedown verification: re-check referred URLs until their removal is confirmed.

``refer`` starts it; the scheduler (``hotline scheduler``) hands due checks to RQ, where
``run_batch`` checks, records the verdict, moves the referral's state on and notifies.
"""

from .check import Evidence, check
from .lifecycle import NEGATIVE, Progress, advance
from .recheck import run_batch
from .referral import NotScanned, refer
from .schedule import Scheduler
from .stats import takedown_stats

__all__ = [
    "NEGATIVE",
    "Evidence",
    "NotScanned",
    "Progress",
    "Scheduler",
    "advance",
    "check",
    "refer",
    "run_batch",
    "takedown_stats",
]
