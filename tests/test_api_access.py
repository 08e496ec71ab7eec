"""API access: the role matrix over every route, OpenAPI ↔ routes, tokens, sessions and
CSRF, the audit log, and a 503 (never a 200) when the database is down."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import requests

from api.spec import document
from hotline.config import Settings
from store import Store

from .api_helpers import MD5_KNOWN, PHASH_KNOWN, ApiServer, Client, Seeded, seeded_api
from .helpers import run_hotline


@pytest.fixture
def bench(hotline_env: dict, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple]:
    with seeded_api(monkeypatch, redis_url) as running:
        yield running


def cases(seeded: Seeded) -> list[tuple[str, str, str, dict, str | None]]:
    """(method, route, concrete path, request kwargs, permission needed) for every route."""
    hit = seeded.reports["hit"]
    entry = {"signal_type": "md5", "hash": MD5_KNOWN}
    keys = {"json": {"keys": ["IWF-1"]}}
    return [
        ("GET", "/healthz", "/healthz", {}, None),
        ("GET", "/readyz", "/readyz", {}, None),
        ("GET", "/metrics", "/metrics", {}, "signed_in"),
        ("GET", "/api/openapi.json", "/api/openapi.json", {}, "signed_in"),
        ("POST", "/api/reports", "/api/reports", {"json": {"url": "http://a.test/"}}, "submit"),
        (
            "POST",
            "/api/reports/bulk",
            "/api/reports/bulk",
            {"json": {"reports": [{"url": "http://b.test/"}]}},
            "submit",
        ),
        ("GET", "/api/reports/{report_id}", f"/api/reports/{hit}", {}, "read"),
        ("GET", "/api/reports/{report_id}/evidence", f"/api/reports/{hit}/evidence", {}, "read"),
        (
            "POST",
            "/api/reports/{report_id}/refer",
            f"/api/reports/{hit}/refer",
            {"json": {"party": "host-a"}},
            "refer",
        ),
        ("GET", "/api/search", "/api/search?domain=example.test", {}, "read"),
        ("GET", "/api/search/export", "/api/search/export?format=json", {}, "read"),
        ("GET", "/api/hashes/{signal_type}/{hash}", f"/api/hashes/md5/{MD5_KNOWN}", {}, "read"),
        (
            "POST",
            "/api/classify",
            "/api/classify",
            {"json": {**entry, "category": "A1"}},
            "classify",
        ),
        ("GET", "/api/stats", "/api/stats", {}, "read"),
        ("GET", "/api/lists", "/api/lists", {}, "read"),
        (
            "POST",
            "/api/lists/{name}/entries",
            "/api/lists/extra/entries",
            {"data": f"md5 {'1' * 32}\n"},
            "admin",
        ),
        ("POST", "/api/lists/{name}/disable", "/api/lists/known-a1/disable", keys, "admin"),
        ("POST", "/api/lists/{name}/enable", "/api/lists/known-a1/enable", keys, "admin"),
        ("GET", "/api/audit", "/api/audit", {}, "admin"),
        ("GET", "/api/tokens", "/api/tokens", {}, "admin"),
        ("POST", "/api/tokens", "/api/tokens", {"json": {"name": "x", "role": "intake"}}, "admin"),
        ("DELETE", "/api/tokens/{token_id}", "/api/tokens/999", {}, "admin"),
        ("GET", "/login", "/login", {}, None),
        ("POST", "/login", "/login", {"data": {"token": "wrong"}}, None),
        ("POST", "/logout", "/logout", {}, "signed_in"),
        ("GET", "/", "/", {}, "read"),
        ("GET", "/search", "/search?domain=example.test", {}, "read"),
        ("GET", "/reports/{report_id}", f"/reports/{hit}", {}, "read"),
        (
            "POST",
            "/reports/{report_id}/refer",
            f"/reports/{hit}/refer",
            {"data": {"party": "p"}},
            "refer",
        ),
        ("GET", "/hashes/{signal_type}/{hash}", f"/hashes/phash/{PHASH_KNOWN}", {}, "read"),
        ("POST", "/classify", "/classify", {"data": {**entry, "category": "A1"}}, "classify"),
        ("GET", "/stats", "/stats", {}, "read"),
        ("GET", "/audit", "/audit", {}, "admin"),
    ]


def app_routes(server: ApiServer) -> set[tuple[str, str]]:
    return {
        (route.method, route.resource.canonical)
        for route in server.app.router.routes()
        if route.method != "HEAD"
    }


ALLOWED = {
    "intake": {"signed_in", "submit"},
    "analyst": {"signed_in", "submit", "read", "refer", "classify"},
    "admin": {"signed_in", "submit", "read", "refer", "classify", "admin"},
}


def test_role_matrix_covers_every_route(bench: tuple) -> None:
    """Each route × {no token, intake, analyst, admin}: allowed or denied as the roles say."""
    server, seeded, _ = bench
    table = cases(seeded)
    assert {(method, route) for method, route, *_ in table} == app_routes(server)
    outcomes = {}
    for role in (None, "intake", "analyst", "admin"):
        client = Client(server, seeded.tokens.get(role or ""))
        for method, route, path, kwargs, permission in table:
            status = client.request(method, path, **kwargs).status_code
            outcomes[role, method, route] = status
            if permission is None:
                assert status < 500, (role, method, path, status)
                continue
            elif role is None:
                expected = "refused"
            else:
                expected = "allowed" if permission in ALLOWED[role] else "forbidden"
            if expected == "refused":
                ui_get = method == "GET" and not path.startswith(("/api/", "/metrics"))
                assert status == (303 if ui_get else 401), (role, method, path, status)
            elif expected == "forbidden":
                assert status == 403, (role, method, path, status)
            else:
                assert status not in (401, 403) and status < 500, (role, method, path, status)
    # Spot checks that "allowed" did the work, not merely got past the door.
    assert outcomes["intake", "POST", "/api/reports"] == 201
    assert outcomes["analyst", "GET", "/api/search"] == 200
    assert outcomes["admin", "POST", "/api/tokens"] == 201
    assert outcomes["admin", "DELETE", "/api/tokens/{token_id}"] == 404


def test_openapi_and_routes_match_both_ways(bench: tuple) -> None:
    server, seeded, _ = bench
    served = Client(server, seeded.tokens["intake"]).get("/api/openapi.json").json()
    assert served == document()
    described = {(method.upper(), path) for path, ops in served["paths"].items() for method in ops}
    api_routes = {
        (method, route)
        for method, route in app_routes(server)
        if route.startswith("/api/") or route in ("/healthz", "/readyz", "/metrics")
    }
    assert described == api_routes
    for path, ops in served["paths"].items():
        for op in ops.values():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"{(\w+)}", path)), path


def test_tokens_from_the_command_line(bench: tuple, hotline_env: dict) -> None:
    server, _, _ = bench
    made = run_hotline("tokens", "create", "--role", "analyst", "--name", "dana", env=hotline_env)
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("hl_") and "not shown again" in made.stderr
    client = Client(server, secret)
    assert client.get("/api/search").status_code == 200

    listed = run_hotline("tokens", env=hotline_env)
    token_id = next(line.split()[0] for line in listed.stdout.splitlines() if "dana" in line)
    assert secret not in listed.stdout
    assert run_hotline("tokens", "revoke", token_id, env=hotline_env).returncode == 0
    assert client.get("/api/search").status_code == 401
    again = run_hotline("tokens", "revoke", token_id, env=hotline_env)
    assert again.returncode == 2 and "no active token" in again.stderr


def test_tokens_are_stored_hashed(bench: tuple) -> None:
    _, seeded, store = bench
    with store.engine.connect() as conn:
        dump = "\n".join(str(row) for row in conn.exec_driver_sql("SELECT * FROM api_tokens"))
    for secret in seeded.tokens.values():
        assert secret not in dump


def test_audit_log_records_who_did_what(bench: tuple) -> None:
    server, seeded, _ = bench
    analyst = Client(server, seeded.tokens["analyst"])
    hit = seeded.reports["hit"]
    assert analyst.get("/api/search?domain=gallery.example.test").status_code == 200
    assert analyst.get(f"/api/reports/{hit}").status_code == 200
    assert analyst.post(f"/api/reports/{hit}/refer", json={"party": "host-a"}).status_code == 200
    assert analyst.get("/api/audit").status_code == 403

    admin = Client(server, seeded.tokens["admin"])
    log = admin.get("/api/audit?actor=analyst-1&per_page=50").json()
    actions = [(e["action"], e["target"]) for e in reversed(log["entries"])]
    assert actions == [
        ("search", None),
        ("report.view", f"report:{hit}"),
        ("report.refer", f"report:{hit}"),
        ("denied", "GET /api/audit"),
    ]
    assert log["entries"][-1]["detail"] == {"domain": "gallery.example.test", "total": 1}
    assert all(e["role"] == "analyst" and e["at"] for e in log["entries"])
    referred = admin.get(f"/api/audit?action=report&target=report:{hit}").json()
    assert [e["action"] for e in referred["entries"]] == ["report.refer", "report.view"]
    assert admin.get("/api/audit?since=not-a-date").status_code == 400


def test_web_session_cookie_and_csrf(bench: tuple) -> None:
    server, seeded, _ = bench
    browser = Client(server, None)
    assert browser.get("/").headers["Location"].startswith("/login")
    bad = browser.post("/login", data={"token": "hl_nope"})
    assert bad.status_code == 401 and "Unknown or revoked" in bad.text
    cross = browser.post(
        "/login", data={"token": seeded.tokens["analyst"]}, headers={"Origin": "http://evil.test"}
    )
    assert cross.status_code == 403

    ok = browser.post("/login", data={"token": seeded.tokens["analyst"], "next": "//evil.test/"})
    assert ok.status_code == 303 and ok.headers["Location"] == "/"
    cookie = ok.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    page = browser.get(f"/reports/{seeded.reports['hit']}")
    assert page.status_code == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)

    refer = f"/reports/{seeded.reports['hit']}/refer"
    assert browser.post(refer, data={"party": "p"}).status_code == 403  # no CSRF token
    assert browser.post(refer, data={"party": "p", "csrf": "forged"}).status_code == 403
    assert browser.post(refer, data={"party": "p", "csrf": csrf}).status_code == 303
    # The session reads the API (exports, evidence) but never writes to it.
    assert browser.get("/api/search").status_code == 200
    assert browser.post("/api/reports", json={"url": "http://x.test/"}).status_code == 401

    assert browser.post("/logout", data={"csrf": csrf}).status_code == 303
    assert browser.get("/search").status_code == 303


def test_ui_never_shows_media(bench: tuple) -> None:
    server, seeded, _ = bench
    analyst = Client(server, seeded.tokens["analyst"])
    pivot = f"/hashes/phash/{PHASH_KNOWN}?distance=8"
    for path in ("/", f"/reports/{seeded.reports['hit']}", pivot, "/search?matched=true", "/stats"):
        page = analyst.get(path)
        assert page.status_code == 200, path
        assert not re.search(r"<(img|video|audio|picture|iframe|object|embed|script)\b", page.text)
        assert not re.search(r'href="https?://', page.text)  # reported URLs are text only
        csp = page.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "img-src 'none'" in csp
        assert page.headers["Cache-Control"] == "no-store"


def test_database_down_is_503_not_200(hotline_env: dict) -> None:
    settings = Settings.from_env()
    down = Store("postgresql+psycopg://postgres@127.0.0.1:1/test?connect_timeout=2")
    server = ApiServer(settings, down).start()
    try:
        answer = Client(server, "hl_any").post("/api/reports", json={"url": "http://a.test/"})
        assert answer.status_code == 503
        assert "database is unavailable" in answer.json()["error"]
        assert "nothing was read or stored" in answer.json()["error"]
        ready = requests.get(server.url("/readyz"), timeout=10)
        assert ready.status_code == 503 and ready.json()["database"] == "unavailable"
        assert requests.get(server.url("/healthz"), timeout=10).status_code == 200
    finally:
        server.stop()
