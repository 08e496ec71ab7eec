"""The JSON API: thin handlers that parse a request, run an action in a thread, answer JSON.

Each route is described in spec.py; tests check that the two list the same routes.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy import exc as db_errors

from store.schema import TOKEN_ROLES

from . import actions, spec
from .auth import PUBLIC, needs
from .keys import REDIS, SETTINGS, STORE, WHO

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
EXPORT_FIELDS = (
    "id", "url", "source", "received_at", "state", "takedown", "scans", "images", "matches",
    "final_url", "server_ips", "lists", "categories", "retro",
)  # fmt: skip
EXPORT_PAGE = 500
# A spreadsheet would run these as formulas: exported cells starting so are quoted.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/openapi.json", openapi)
    app.router.add_post("/api/reports", submit)
    app.router.add_post("/api/reports/bulk", submit_bulk)
    app.router.add_get("/api/reports/{report_id}", report)
    app.router.add_get("/api/reports/{report_id}/evidence", evidence)
    app.router.add_post("/api/reports/{report_id}/refer", refer)
    app.router.add_get("/api/search", search)
    app.router.add_get("/api/search/export", export)
    app.router.add_get("/api/hashes/{signal_type}/{hash}", pivot)
    app.router.add_post("/api/classify", classify)
    app.router.add_get("/api/stats", stats)
    app.router.add_get("/api/lists", lists)
    app.router.add_post("/api/lists/{name}/entries", import_entries)
    app.router.add_post("/api/lists/{name}/disable", disable_entries)
    app.router.add_post("/api/lists/{name}/enable", enable_entries)
    app.router.add_get("/api/audit", audit)
    app.router.add_get("/api/tokens", tokens)
    app.router.add_post("/api/tokens", create_token)
    app.router.add_delete("/api/tokens/{token_id}", revoke_token)


def run(
    request: web.Request, action: Callable[..., Any], *args: Any, **kwargs: Any
) -> Awaitable[Any]:
    """Run `action(store, *args, **kwargs)` in a thread."""
    return asyncio.to_thread(action, request.app[STORE], *args, **kwargs)


def as_json(doc: Any, status: int = 200) -> web.Response:
    return web.json_response(doc, status=status, dumps=lambda d: json.dumps(d, ensure_ascii=False))


async def body_json(request: web.Request) -> dict:
    """The JSON object a request carries; 400 says what is wrong with it."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise spec.bad_request("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise spec.bad_request("the body must be a JSON object")
    return body


def path_id(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    if not raw.isdigit() or not 0 < int(raw) < 2**31:
        raise web.HTTPNotFound(text=f"{name} must be a positive whole number, not {raw[:20]!r}")
    return int(raw)


# operations


@needs(PUBLIC)
async def healthz(request: web.Request) -> web.Response:
    return as_json({"status": "ok"})


@needs(PUBLIC)
async def readyz(request: web.Request) -> web.Response:
    """Ready when the database and Redis both answer; 503 names the one that does not."""
    checks = {}
    try:
        await asyncio.to_thread(request.app[STORE].ping)
        checks["database"] = "ok"
    except db_errors.DBAPIError:
        checks["database"] = "unavailable"
    checks["redis"] = "ok" if await asyncio.to_thread(_redis_answers, request) else "unavailable"
    ready = all(state == "ok" for state in checks.values())
    return as_json({"ready": ready, **checks}, status=200 if ready else 503)


def _redis_answers(request: web.Request) -> bool:
    try:
        return bool(request.app[REDIS].ping())
    except Exception:  # any failure to answer is "not ready", whatever its kind
        return False


@needs("signed_in")
async def openapi(request: web.Request) -> web.Response:
    return as_json(spec.document())


# reports


@needs("submit")
async def submit(request: web.Request) -> web.Response:
    body = await body_json(request)
    [result] = await _submit(request, [body])
    return as_json(result, status=201)


@needs("submit")
async def submit_bulk(request: web.Request) -> web.Response:
    items = (await body_json(request)).get("reports")
    if not isinstance(items, list) or not 0 < len(items) <= 1000:
        raise spec.bad_request("reports must be a list of 1 to 1000 {url, source} objects")
    if not all(isinstance(item, dict) for item in items):
        raise spec.bad_request("each report must be an object with a url")
    return as_json({"reports": await _submit(request, items)}, status=201)


def _submit(request: web.Request, items: list[dict]) -> Awaitable[list[dict]]:
    app = request.app
    return run(request, actions.submit, app[REDIS], app[SETTINGS], request[WHO], items)


@needs("read")
async def report(request: web.Request) -> web.Response:
    found = await run(request, actions.report, request[WHO], path_id(request, "report_id"))
    return as_json(found)


@needs("read")
async def evidence(request: web.Request) -> web.Response:
    values = spec.parse_query(request.query, spec.EVIDENCE)
    doc = await run(request, actions.evidence, request[WHO], path_id(request, "report_id"))
    if values.get("format") == "text":
        return web.Response(text=actions.evidence_text(doc), content_type="text/plain")
    return as_json(doc)


@needs("refer")
async def refer(request: web.Request) -> web.Response:
    body = await body_json(request)
    report_id = path_id(request, "report_id")
    settings, who = request.app[SETTINGS], request[WHO]
    party, sent = body.get("party"), body.get("notice_sent_at")
    return as_json(await run(request, actions.refer, settings, who, report_id, party, sent))


# search


@needs("read")
async def search(request: web.Request) -> web.Response:
    values = spec.parse_query(request.query, {**spec.SEARCH, **spec.PAGING})
    return as_json(await run(request, actions.search, request[WHO], values))


@needs("read")
async def export(request: web.Request) -> web.StreamResponse:
    """Every report of a search, streamed in pages: CSV (spreadsheet-safe) or JSON."""
    values = spec.parse_query(request.query, spec.EXPORT)
    fmt = values.pop("format", "csv")
    ids = await run(request, actions.export_ids, request[WHO], values)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8" if fmt == "csv" else "application/json",
            "Content-Disposition": f'attachment; filename="reports-{stamp}.{fmt}"',
        }
    )
    await response.prepare(request)
    if fmt == "csv":
        await response.write(_csv_rows([EXPORT_FIELDS]))
    else:
        await response.write(b"[")
    for start in range(0, len(ids), EXPORT_PAGE):
        rows = await asyncio.to_thread(
            request.app[STORE].report_summaries, ids[start : start + EXPORT_PAGE]
        )
        if fmt == "csv":
            await response.write(
                _csv_rows([[_cell(row[f]) for f in EXPORT_FIELDS] for row in rows])
            )
        else:
            text = ",".join(json.dumps(row, ensure_ascii=False) for row in rows)
            await response.write(("," if start else "").encode() + text.encode())
    if fmt == "json":
        await response.write(b"]")
    await response.write_eof()
    return response


def _csv_rows(rows: list) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode()


def _cell(value: Any) -> Any:
    if isinstance(value, list):
        value = " ".join(map(str, value))
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


@needs("read")
async def pivot(request: web.Request) -> web.Response:
    values = spec.parse_query(request.query, spec.PIVOT)
    signal_type, value = request.match_info["signal_type"], request.match_info["hash"]
    return as_json(await run(request, actions.pivot, request[WHO], signal_type, value, values))


@needs("classify")
async def classify(request: web.Request) -> web.Response:
    body = await body_json(request)
    app = request.app
    result = await run(request, actions.classify, app[REDIS], app[SETTINGS], request[WHO], body)
    return as_json(result)


@needs("read")
async def stats(request: web.Request) -> web.Response:
    return as_json(await run(request, actions.statistics, request.app[REDIS]))


# lists


@needs("read")
async def lists(request: web.Request) -> web.Response:
    return as_json({"lists": await asyncio.to_thread(request.app[STORE].lists)})


@needs("admin")
async def import_entries(request: web.Request) -> web.Response:
    values = spec.parse_query(request.query, spec.IMPORT)
    app, text = request.app, await request.text()
    result = await run(
        request,
        actions.import_list,
        app[REDIS],
        app[SETTINGS],
        request[WHO],
        request.match_info["name"],
        text,
        kind=values.get("kind", "known"),
        category=values.get("category"),
    )
    return as_json(result)


@needs("admin")
async def disable_entries(request: web.Request) -> web.Response:
    return await _set_enabled(request, False)


@needs("admin")
async def enable_entries(request: web.Request) -> web.Response:
    return await _set_enabled(request, True)


async def _set_enabled(request: web.Request, enabled: bool) -> web.Response:
    keys = (await body_json(request)).get("keys")
    app, name = request.app, request.match_info["name"]
    result = await run(
        request, actions.set_entries_enabled, app[REDIS], app[SETTINGS], request[WHO], name,
        keys, enabled,
    )  # fmt: skip
    return as_json(result)


# access


@needs("admin")
async def audit(request: web.Request) -> web.Response:
    values = spec.parse_query(request.query, spec.AUDIT)
    return as_json(await run(request, actions.audit_log, request[WHO], values))


@needs("admin")
async def tokens(request: web.Request) -> web.Response:
    return as_json({"tokens": await asyncio.to_thread(request.app[STORE].tokens)})


@needs("admin")
async def create_token(request: web.Request) -> web.Response:
    body = await body_json(request)
    name = actions.checked_text(body.get("name"), "name", 200)
    role = body.get("role")
    if role not in TOKEN_ROLES:
        raise spec.bad_request(f"role must be one of {', '.join(TOKEN_ROLES)}")

    def create(store: Any) -> tuple[int, str]:
        token_id, secret = store.create_token(name, role)
        detail = {"name": name, "role": role}
        store.audit(request[WHO], "tokens.create", f"token:{token_id}", detail)
        return token_id, secret

    token_id, secret = await run(request, create)
    return as_json({"id": token_id, "name": name, "role": role, "token": secret}, status=201)


@needs("admin")
async def revoke_token(request: web.Request) -> web.Response:
    token_id = path_id(request, "token_id")

    def revoke(store: Any) -> bool:
        revoked = store.revoke_token(token_id)
        if revoked:
            store.audit(request[WHO], "tokens.revoke", f"token:{token_id}")
        return revoked

    if not await run(request, revoke):
        raise web.HTTPNotFound(text=f"no active token has id {token_id}")
    return as_json({"id": token_id, "revoked": True})
