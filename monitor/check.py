"""One check of a referred URL: fetch it as the intake scan did, look for the referred
hashes, and settle on one verdict.

The HTTP stage answers most checks (404s, dead hosts, direct image URLs); the browser opens
only pages that still answer 2xx, and pages whose HTTP-stage answer would confirm a removal
(sites answer scripts differently from browsers). Both present the intake scan's identity.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from hotline import intake
from hotline.config import Settings
from matcher import Entry, Index

from .lifecycle import NEGATIVE

# Signal types of a scan document's images that a check compares.
SIGNALS = ("md5", "sha1", "sha256", "phash", "pdq")
PDQ_MIN_QUALITY = 50  # as hash lists take them: lower-quality PDQ hashes match noise
# Direct image URLs fetched per check when the page itself shows nothing referred.
MAX_IMAGE_URLS = 10
# Verdicts about the host, not the page.
UNREACHABLE = ("gone_dns", "gone_connect", "blocked")


@dataclass(frozen=True)
class Evidence:
    """What a check looks for: hashes of the referred images and where they were served."""

    hashes: tuple[tuple[str, str], ...]
    image_urls: tuple[str, ...]
    scan_id: int | None = None

    @classmethod
    def from_scan(cls, scan: dict) -> Evidence:
        """The matched images of a scan, or all its images when none matched."""
        images = [i for i in scan["images"] if i["matches"]] or scan["images"]
        hashes = {
            (signal, image[signal])
            for image in images
            for signal in SIGNALS
            if image.get(signal)
            and not (signal == "pdq" and (image.get("pdq_quality") or 0) < PDQ_MIN_QUALITY)
        }
        urls = dict.fromkeys(i["url"] for i in images if i["url"].startswith(("http:", "https:")))
        return cls(tuple(sorted(hashes)), tuple(urls), scan.get("id"))

    @classmethod
    def from_json(cls, doc: dict) -> Evidence:
        return cls(
            tuple((s, h) for s, h in doc["hashes"]), tuple(doc["image_urls"]), doc.get("scan_id")
        )

    def as_json(self) -> dict:
        return {
            "scan_id": self.scan_id,
            "hashes": [list(pair) for pair in self.hashes],
            "image_urls": list(self.image_urls),
        }

    def index(self) -> Index:
        return Index.build(
            Entry(
                id=n,
                ref=f"{signal}:{value}",
                list="referred",
                signal_type=signal,
                hash=value,
                category=None,
            )
            for n, (signal, value) in enumerate(self.hashes)
        )


def judge(doc: dict, *, has_evidence: bool, page_without_browser: bool = False) -> str | None:
    """The verdict one fetch supports; None for a 2xx page the browser has yet to open."""
    if any(image["matches"] for image in doc["images"]):
        return "live"
    kind = doc["error"]["kind"] if doc["error"] else None
    if kind == "blocked":
        return "blocked"
    if kind == "dns":
        return "gone_dns"
    if kind == "connect":
        # Nobody accepted the connection: gone. Accepted, then broke off: a reset.
        return "transient" if doc["server_ip"] else "gone_connect"
    if kind == "not_html":
        return "content_gone"
    if kind not in (None, "http_status"):
        return "transient"  # timeout, tls, browser, too_large, redirects
    status = doc["http_status"]
    if status in (404, 410):
        return "gone_http"
    if status == 451:
        return "legal_451"
    if status is None or status in (408, 425, 429) or status >= 500:
        return "transient"
    if status >= 400:
        return "denied"  # 401, 403 and the other refusals that prove nothing
    if not 200 <= status < 300:
        return "transient"
    if doc["meta"].get("challenge"):
        return "denied"  # a bot wall stood in front of the page: it shows nothing either way
    if not has_evidence:
        return "live"  # nothing to look for: a page that answers cannot be shown gone
    if page_without_browser and not doc["meta"].get("images_fed"):
        return None
    return "content_gone"


def combine(page: str, images: list[str]) -> str:
    """One verdict from the page's and the image URLs': any copy still served keeps the
    referral live, and a gone page with an image URL we could not read proves nothing."""
    if page == "live" or "live" in images:
        return "live"
    if page in NEGATIVE:
        return next((v for v in images if v not in NEGATIVE), page)
    return page


async def check(
    url: str,
    evidence: Evidence,
    settings: Settings,
    *,
    confirming: bool = False,
    browsers: asyncio.Semaphore | None = None,
    **capture_kw: Any,
) -> tuple[str, dict]:
    """Check ``url`` for the evidence: (verdict, what was fetched and how).

    ``confirming``: a negative answer would confirm the removal, so an HTTP-stage 404/410
    is re-checked in the browser first. ``browsers`` bounds concurrent browser visits.
    """
    t0 = time.monotonic()
    index = evidence.index()
    page = await _fetch(url, "page", index, settings, browser=False, **capture_kw)
    if page["verdict"] is None or (confirming and page["verdict"] == "gone_http"):
        async with browsers or contextlib.nullcontext():
            page = await _fetch(url, "page", index, settings, browser=True, **capture_kw)
    targets = [page]
    if page["verdict"] != "live":
        others = [u for u in evidence.image_urls if u != url]
        if page["verdict"] in UNREACHABLE:  # the same host and port would answer the same
            others = [u for u in others if _origin(u) != _origin(url)]
        others = others[:MAX_IMAGE_URLS]
        targets += await asyncio.gather(
            *(_fetch(u, "image", index, settings, browser=False, **capture_kw) for u in others)
        )
    verdict = combine(page["verdict"], [t["verdict"] for t in targets[1:]])
    return verdict, {
        "stage": page["stage"],
        "http_status": page["http_status"],
        "user_agent": settings.identity.user_agent,
        "confirming": confirming,
        "duration_s": round(time.monotonic() - t0, 3),
        "targets": targets,
    }


async def _fetch(
    url: str, role: str, index: Index, settings: Settings, *, browser: bool, **capture_kw: Any
) -> dict:
    doc = await intake.scan(url, settings, index, browser=browser, **capture_kw)
    verdict = judge(
        doc, has_evidence=len(index) > 0, page_without_browser=role == "page" and not browser
    )
    return {
        "url": url,
        "role": role,
        "verdict": verdict,
        "stage": doc["meta"].get("stage") or "http",  # none: the HTTP stage failed
        "http_status": doc["http_status"],
        "final_url": doc["final_url"],
        "redirects": len(doc["redirects"]),
        "server_ip": doc["server_ip"],
        "error": doc["error"],
        "images": len(doc["images"]),
        "found": [
            {"url": image["url"], "signal_type": m["signal_type"], "distance": m["distance"]}
            for image in doc["images"]
            for m in image["matches"][:1]
        ],
    }


def _origin(url: str) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, parts.netloc.lower()
