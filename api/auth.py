"""Roles, and who is asking: a bearer token (integrations) or a web session cookie (analysts).

Every route declares the permission it needs with `@needs(...)`; a route that declares
none is refused to everyone, so forgetting is never an open door.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from yarl import URL

from .keys import STORE, WHO

PUBLIC = "public"
ROLES: dict[str, frozenset[str]] = {
    "intake": frozenset({"signed_in", "submit"}),
    "analyst": frozenset({"signed_in", "submit", "read", "refer", "classify"}),
    "admin": frozenset({"signed_in", "submit", "read", "refer", "classify", "admin"}),
}
SESSION_COOKIE = "hotline_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def needs(permission: str) -> Callable[[Handler], Handler]:
    """Declare what a route handler needs: PUBLIC, or a permission some ROLES hold."""
    if permission != PUBLIC and not any(permission in held for held in ROLES.values()):
        raise ValueError(f"no role holds permission {permission!r}")

    def mark(handler: Handler) -> Handler:
        handler.permission = permission  # type: ignore[attr-defined]
        return handler

    return mark


def is_api(request: web.Request) -> bool:
    """API paths answer in JSON and take bearer tokens; the rest is the web UI."""
    return request.path.startswith("/api/") or request.path in ("/metrics", "/healthz", "/readyz")


@web.middleware
async def access(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate, check the route's permission, and check forms against CSRF."""
    permission = getattr(request.match_info.handler, "permission", None)
    if permission == PUBLIC:
        return await handler(request)
    who = await identify(request)
    if who is None:
        if is_api(request) or request.method not in SAFE_METHODS:
            raise web.HTTPUnauthorized(
                text="a valid token is needed: send `Authorization: Bearer <token>` "
                "(an admin creates one with `hotline tokens create`)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        raise web.HTTPSeeOther(URL("/login").with_query(next=request.path_qs))
    request[WHO] = who
    if permission not in ROLES[who["role"]]:
        store = request.app[STORE]
        await asyncio.to_thread(store.audit, who, "denied", f"{request.method} {request.path}")
        raise web.HTTPForbidden(text=f"the {who['role']} role may not do this")
    if who["via"] == "session" and request.method not in SAFE_METHODS:
        await check_form(request, who["csrf"])
    return await handler(request)


async def identify(request: web.Request) -> dict[str, Any] | None:
    """{id, name, role, via[, csrf]} of the caller, or None.

    Sessions serve the UI and read-only API calls (exports, evidence); a write to the API
    needs the bearer token itself, so no cross-site form can make one.
    """
    store = request.app[STORE]
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and secret.strip():
        token = await asyncio.to_thread(store.token_for, secret.strip())
        return None if token is None else {**token, "via": "token", "csrf": None}
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie or (is_api(request) and request.method not in SAFE_METHODS):
        return None
    session = await asyncio.to_thread(store.session_for, cookie)
    return None if session is None else {**session, "via": "session"}


async def check_form(request: web.Request, csrf: str | None) -> None:
    """A state-changing form must come from our own pages: same origin, right CSRF token."""
    origin = request.headers.get("Origin")
    if origin and origin != f"{request.scheme}://{request.host}":
        raise web.HTTPForbidden(text="cross-origin form refused")
    if csrf is not None:
        sent = (await request.post()).get("csrf", "")
        if not isinstance(sent, str) or not hmac.compare_digest(sent, csrf):
            raise web.HTTPForbidden(text="the form has expired: reload the page and try again")
