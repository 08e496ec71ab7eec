"""Sandboxed capture of reported URLs: egress guard, browser, image collection.

The public face is :func:`capture` and the types it takes and returns; nothing
here stores anything.
"""

from .capture import (
    Browsing,
    FoundImage,
    Identity,
    ImageSink,
    PageResult,
    ScanError,
    ScanLimits,
    capture,
    sniff_image,
)
from .egress import EgressPolicy, EgressProxy, check_url
from .sandbox import scans_root, sweep

__all__ = [
    "Browsing",
    "EgressPolicy",
    "EgressProxy",
    "FoundImage",
    "Identity",
    "ImageSink",
    "PageResult",
    "ScanError",
    "ScanLimits",
    "capture",
    "check_url",
    "scans_root",
    "sniff_image",
    "sweep",
]
