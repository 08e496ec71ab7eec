"""Persistence of hotline-scanner: reports, scans (hashes and metadata only) and hash lists."""

from store.db import ReportNotFound, Store
from store.lists import ListInUse, ListNotFound

__all__ = ["ListInUse", "ListNotFound", "ReportNotFound", "Store"]
