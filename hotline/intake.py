"""One scan, end to end in memory: capture → hash → match → scan document.

The scan document is the JSON contract of ``hotline scan --json`` and of what the
store keeps; integrations rely on its field names.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from matcher import ImageHashes, Index, Match, hash_image, split_allowed
from scanner import Browsing, FoundImage, PageResult, capture

from .config import Settings
from .matching import match_document

log = logging.getLogger(__name__)

# Tracking pixels and spacers: counted, not kept.
TINY_PX = 16


def browsing(settings: Settings) -> Browsing:
    return Browsing(
        executable=settings.browser_path,
        home=settings.home,
        identity=settings.identity,
    )


async def scan(url: str, settings: Settings, index: Index, **capture_kw: Any) -> dict[str, Any]:
    """Scan ``url`` and return its scan document; the page's failures are in ``error``."""
    hashed: list[tuple[str, ImageHashes]] = []
    lock = threading.Lock()

    def sink(image: FoundImage) -> None:
        h = hash_image(image.data, max_pixels=settings.limits.max_pixels)
        with lock:
            hashed.append((image.url, h))

    page = await capture(
        url,
        policy=settings.policy,
        limits=settings.limits,
        browsing=browsing(settings),
        sink=sink,
        upstream=settings.egress_proxy,
        **capture_kw,
    )
    kept = [(u, h) for u, h in hashed if not _tiny(h)]
    page.meta["tiny_images"] = len(hashed) - len(kept)
    matches = index.match_many([h for _, h in kept]) if kept else []
    return scan_document(page, kept, matches)


def _tiny(h: ImageHashes) -> bool:
    return h.width is not None and h.height is not None and min(h.width, h.height) < TINY_PX


def scan_document(
    page: PageResult, images: list[tuple[str, ImageHashes]], matches: list[list[Match]]
) -> dict[str, Any]:
    docs = [_image_doc(url, h, m) for (url, h), m in zip(images, matches, strict=True)]
    return {
        "url": page.url,
        "final_url": page.final_url,
        "status": "failed" if page.error else "completed",
        "error": page.error.as_dict() if page.error else None,
        "http_status": page.http_status,
        "redirects": page.redirects,
        "server_ip": page.server_ip,
        "started_at": page.started_at.isoformat(),
        "finished_at": page.finished_at.isoformat() if page.finished_at else None,
        "matched": any(d["matches"] for d in docs),
        "images": docs,
        "blocked": page.blocked,
        "meta": {**page.meta, "skipped": page.skipped},
    }


def _image_doc(url: str, h: ImageHashes, matches: list[Match]) -> dict[str, Any]:
    reported, allowed = split_allowed(matches)
    return {
        "url": url,
        "md5": h.md5,
        "sha1": h.sha1,
        "sha256": h.sha256,
        "phash": h.phash,
        "pdq": h.pdq,
        "pdq_quality": h.pdq_quality,
        "width": h.width,
        "height": h.height,
        "bytes": h.bytes,
        "format": h.format,
        "dhash": h.dhash,
        # Looked up besides the main hashes: mirrored, PDQ's rotations, animation frames.
        "query_hashes": {"phash": list(h.query_phashes), "pdq": list(h.query_pdqs)},
        "error": {"kind": h.error[0], "message": h.error[1]} if h.error else None,
        "matches": [match_document(m) for m in reported],
        # Matches of allow lists: why an image that matches them has no "matches".
        "allowed": [match_document(m) for m in allowed],
    }
