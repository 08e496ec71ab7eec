"""The web UI: server-rendered HTML, no JavaScript, and no media, ever.

The Content-Security-Policy allows our one stylesheet and nothing else: no images, no
media, no scripts, no frames, so not even a hostile URL in a report can load anything.
Reported URLs are shown as text, never as links.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from datetime import timedelta
from importlib import resources
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from store.schema import REPORT_STATES, TAKEDOWN_STATES

from . import actions, spec
from .auth import PUBLIC, SESSION_COOKIE, check_form, needs
from .keys import REDIS, SETTINGS, STORE, WHO
from .routes import path_id, run

TEMPLATES = resources.files(__package__) / "templates"
CSS = (TEMPLATES / "style.css").read_text()
CSP = (
    "default-src 'none'; "
    f"style-src 'sha256-{base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()}'; "
    "img-src 'none'; media-src 'none'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
# Search form: (parameter, label, placeholder); enum parameters become drop-downs.
FIELDS = (
    ("url", "URL contains", "/gallery/"),
    ("domain", "Domain", "example.org"),
    ("server_ip", "Server IP", "203.0.113.7"),
    ("hash", "Hash (exact)", "md5, sha1, sha256, phash or pdq"),
    ("near", "Near hash", "phash or pdq"),
    ("distance", "Distance ≤", "10 (phash), 31 (pdq)"),
    ("list", "List", "known-a1"),
    ("category", "Category", "A1"),
    ("state", "Report state", ""),
    ("takedown", "Takedown state", ""),
    ("retro", "Retro match", ""),
    ("matched", "Matched", ""),
    ("since", "Received since", "2024-05-01"),
    ("until", "Received before", "2024-06-01"),
    ("sort", "Sort by", ""),
    ("order", "Order", ""),
)
CHOICES = {
    "state": REPORT_STATES,
    "takedown": TAKEDOWN_STATES,
    "retro": ("true", "false"),
    "matched": ("true", "false"),
    "sort": tuple(spec.SEARCH["sort"][0]["enum"]),
    "order": ("desc", "asc"),
}


def setup(app: web.Application) -> None:
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/", dashboard)
    app.router.add_get("/search", search)
    app.router.add_get("/reports/{report_id}", report)
    app.router.add_post("/reports/{report_id}/refer", refer)
    app.router.add_get("/hashes/{signal_type}/{hash}", pivot)
    app.router.add_post("/classify", classify)
    app.router.add_get("/stats", takedowns)
    app.router.add_get("/audit", audit)


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    html = ENV.get_template(template).render(css=CSS, who=request.get(WHO), **context)
    return web.Response(text=html, status=status, content_type="text/html")


def error_page(
    request: web.Request, status: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    response = render(request, "error.html", status=status, code=status, message=message)
    response.headers.update(headers or {})
    return response


def _next(value: Any) -> str:
    """Where to go after a form: only a path on this site (no open redirect)."""
    if isinstance(value, str) and value.startswith("/") and not value.startswith("//"):
        return value
    return "/"


# session


@needs(PUBLIC)
async def login_page(request: web.Request) -> web.Response:
    return render(request, "login.html", next=_next(request.query.get("next")), error=None)


@needs(PUBLIC)
async def login(request: web.Request) -> web.Response:
    """Exchange a token for a session cookie (HttpOnly, SameSite=Strict)."""
    await check_form(request, None)
    form = await request.post()
    target = _next(form.get("next"))
    secret = form.get("token")
    token = None
    if isinstance(secret, str) and secret.strip():
        token = await asyncio.to_thread(request.app[STORE].token_for, secret.strip())
    if token is None:
        return render(
            request, "login.html", status=401, next=target, error="Unknown or revoked token."
        )
    ttl = request.app[SETTINGS].api.session_ttl

    def open_session(store: Any) -> tuple[str, str]:
        opened = store.open_session(token["id"], timedelta(seconds=ttl))
        store.audit(token, "session.login")
        return opened

    cookie, _ = await run(request, open_session)
    response = web.HTTPSeeOther(target)
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=int(ttl),
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="/",
    )
    raise response


@needs("signed_in")
async def logout(request: web.Request) -> web.Response:
    cookie = request.cookies.get(SESSION_COOKIE)

    def close(store: Any) -> None:
        if cookie:
            store.close_session(cookie)
        store.audit(request[WHO], "session.logout")

    await run(request, close)
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


# pages


@needs("read")
async def dashboard(request: web.Request) -> web.Response:
    stats = await run(request, actions.statistics, request.app[REDIS])
    latest = await run(request, actions.search, request[WHO], {"matched": True, "per_page": 10})
    return render(request, "dashboard.html", stats=stats, results=latest["results"])


@needs("read")
async def search(request: web.Request) -> web.Response:
    query = {k: v for k, v in request.query.items() if k != "page" and v.strip()}
    context = {
        "fields": FIELDS,
        "choices": CHOICES,
        "query": query,
        "found": None,
        "error": None,
        "page_query": urlencode(query),
        "export_query": urlencode(query),
    }
    if not query:
        return render(request, "search.html", **context)
    try:
        values = spec.parse_query(request.query, {**spec.SEARCH, **spec.PAGING})
        context["found"] = await run(request, actions.search, request[WHO], values)
    except web.HTTPBadRequest as e:
        return render(request, "search.html", status=400, **{**context, "error": e.text})
    return render(request, "search.html", **context)


@needs("read")
async def report(request: web.Request) -> web.Response:
    report_id = path_id(request, "report_id")
    found = await run(request, actions.report, request[WHO], report_id)
    return render(
        request,
        "report.html",
        report=found,
        takedown=found["takedown"],
        timeline=timeline(found),
        hash_types=actions.HASH_COLUMNS,
        notice=request.query.get("notice"),
    )


@needs("refer")
async def refer(request: web.Request) -> web.Response:
    report_id = path_id(request, "report_id")
    form = await request.post()
    settings, who, party = request.app[SETTINGS], request[WHO], form.get("party")
    await run(request, actions.refer, settings, who, report_id, party, form.get("notice_sent_at"))
    raise web.HTTPSeeOther(
        f"/reports/{report_id}?" + urlencode({"notice": f"Referred to {party}."})
    )


@needs("read")
async def pivot(request: web.Request) -> web.Response:
    signal_type, value = request.match_info["signal_type"], request.match_info["hash"]
    values = spec.parse_query(request.query, spec.PIVOT)
    found = await run(request, actions.pivot, request[WHO], signal_type, value, values)
    query = {k: v for k, v in request.query.items() if k == "distance"}
    return render(
        request,
        "pivot.html",
        p=found,
        near=signal_type in actions.NEAR_TYPES,
        page_query=urlencode(query),
        notice=request.query.get("notice"),
    )


@needs("classify")
async def classify(request: web.Request) -> web.Response:
    form = await request.post()
    body = {key: form.get(key) for key in ("signal_type", "hash", "category")}
    app = request.app
    result = await run(request, actions.classify, app[REDIS], app[SETTINGS], request[WHO], body)
    notice = (
        f"Classified as {result['category']}: {result['added']} hash(es) added to "
        f"{result['list']}, {result['already_listed']} already there."
    )
    target = _next(form.get("next"))
    raise web.HTTPSeeOther(f"{target}?" + urlencode({"notice": notice}))


@needs("read")
async def takedowns(request: web.Request) -> web.Response:
    stats = await run(request, actions.statistics, request.app[REDIS])
    return render(
        request,
        "stats.html",
        stats=stats,
        chart=removal_chart(stats["takedowns"]["share_removed_by_day"]),
    )


@needs("admin")
async def audit(request: web.Request) -> web.Response:
    query = {k: v for k, v in request.query.items() if k != "page" and v.strip()}
    context: dict[str, Any] = {"query": query, "page_query": urlencode(query), "error": None}
    try:
        values = spec.parse_query(request.query, spec.AUDIT)
    except web.HTTPBadRequest as e:
        empty = {"total": 0, "entries": [], "page": 1, "per_page": 50}
        return render(request, "audit.html", status=400, **empty, **{**context, "error": e.text})
    found = await run(request, actions.audit_log, request[WHO], values)
    return render(request, "audit.html", **found, **context)


def timeline(report: dict) -> list[tuple[str, str, str]]:
    """(time, what happened, css class) of the report, its scans and takedown, in order."""
    events = [
        (report["received_at"], f"Report received from {report['source'] or 'unknown source'}", "")
    ]
    for n, scan in enumerate(report["scans"], 1):
        events.append((scan["started_at"], f"Scan {n} started: {scan['url']}", ""))
        if scan["finished_at"]:
            matches = sum(len(image["matches"]) for image in scan["images"])
            outcome = (
                f"{scan['error']['kind']} error" if scan["error"] else f"HTTP {scan['http_status']}"
            )
            events.append(
                (
                    scan["finished_at"],
                    f"Scan {n} {scan['status']} ({outcome}), server {scan['server_ip'] or '–'}, "
                    f"{len(scan['images'])} image(s), {matches} match(es)",
                    "match" if matches else "",
                )
            )
    takedown = report.get("takedown")
    if takedown:
        for key, text in (
            ("referred_at", f"Referred to {takedown['party']}"),
            ("notice_sent_at", "Notice sent"),
            ("removed_at", "Removal first seen"),
            ("confirmed_at", "Removal confirmed"),
            ("reopened_at", "Content back online"),
        ):
            if takedown.get(key):
                events.append((takedown[key], text, "overdue" if key == "reopened_at" else ""))
        for check in takedown["checks"]:
            events.append((check["at"], f"Check: {check['verdict']}", ""))
    return sorted(events, key=lambda event: event[0])


def removal_chart(shares: list[float | None], width: int = 640, height: int = 220) -> dict:
    """Coordinates of the share-removed-by-day line for the inline SVG chart; days whose
    outcome is not known yet are left out."""
    left, right, top, bottom = 40, 10, 10, 24
    x_step = (width - left - right) / max(len(shares) - 1, 1)

    def y(share: float) -> float:
        return top + (1 - share) * (height - top - bottom)

    return {
        "width": width,
        "height": height,
        "points": " ".join(
            f"{left + day * x_step:.1f},{y(share):.1f}"
            for day, share in enumerate(shares)
            if share is not None
        ),
        "x_ticks": [(left + day * x_step, f"{day}d") for day in range(0, len(shares), 5)],
        "y_ticks": [(y(share), f"{share:.0%}") for share in (0, 0.25, 0.5, 0.75, 1)],
    }
