"""Persistence of hotline-scanner: reports, scans (hashes and metadata only) and hash lists."""

from store.db import ListNotFound, ReportNotFound, Store

__all__ = ["ListNotFound", "ReportNotFound", "Store"]
