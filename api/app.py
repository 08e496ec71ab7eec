"""The HTTP face of hotline-scanner: JSON API, web UI, metrics and health in one aiohttp app.

Handlers run store calls in threads (`asyncio.to_thread`): the store is synchronous
SQLAlchemy, and one slow query must not stall every other request.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

import redis
from aiohttp import web
from sqlalchemy import exc as db_errors

from hotline.config import Settings
from store import ListNotFound, ReportNotFound, Store
from workers import connect

from . import actions, metrics, routes, ui
from .auth import access, is_api
from .keys import REDIS, SETTINGS, STORE

log = logging.getLogger(__name__)

# Bulk submissions and hash-list imports are the largest bodies.
MAX_BODY = 64 * 2**20
NEAR_LOADER = web.AppKey("near_loader", asyncio.Future)


def create_app(settings: Settings, store: Store | None = None) -> web.Application:
    """The application; `store` must be migrated (serve() does it)."""
    app = web.Application(
        middlewares=[errors, metrics.middleware, access], client_max_size=MAX_BODY
    )
    app[SETTINGS] = settings
    app[STORE] = store or Store(settings.database_url)
    app[REDIS] = connect(settings)
    routes.setup(app)
    ui.setup(app)
    metrics.setup(app)
    app.on_response_prepare.append(_headers)
    app.on_startup.append(_load_near_index)
    app.on_cleanup.append(_close)
    return app


def serve(settings: Settings) -> None:
    """Run the API and web UI on HOTLINE_API_HOST:HOTLINE_API_PORT until interrupted."""
    store = Store(settings.database_url)
    store.migrate()
    host, port = settings.api.host, settings.api.port
    web.run_app(
        create_app(settings, store),
        host=host,
        port=port,
        access_log=log,
        print=lambda _: print(f"hotline API and web UI on http://{host}:{port}/", flush=True),
    )


@web.middleware
async def errors(request: web.Request, handler: routes.Handler) -> web.StreamResponse:
    """Every failure becomes a clear answer: JSON for the API, a page for the UI.

    A database that cannot be reached is a 503 (retry later), never a 200: a submission
    is only acknowledged once it is stored.
    """
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        headers = {k: v for k, v in e.headers.items() if k == "WWW-Authenticate"}
        return _error(request, e.status, e.text or e.reason, headers)
    except ReportNotFound as e:
        return _error(request, 404, f"no report has id {e}")
    except ListNotFound as e:
        return _error(request, 404, f"no hash list is named {e}")
    except actions.NotFound as e:
        return _error(request, 404, str(e))
    except (db_errors.OperationalError, db_errors.InterfaceError) as e:
        log.warning("database unavailable for %s %s: %s", request.method, request.path, e.orig)
        return _error(
            request,
            503,
            "the database is unavailable, so nothing was read or stored; "
            "try again shortly (operators: check HOTLINE_DATABASE_URL and the database server)",
            {"Retry-After": "10"},
        )
    except redis.RedisError as e:
        log.warning("Redis unavailable for %s %s: %s", request.method, request.path, e)
        return _error(request, 503, "the job queue (Redis) is unavailable; try again shortly")
    except Exception:
        incident = secrets.token_hex(4)
        log.exception("internal error %s on %s %s", incident, request.method, request.path)
        return _error(request, 500, f"internal error {incident}; it is logged for operators")


def _error(
    request: web.Request, status: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    if is_api(request):
        return web.json_response({"error": message}, status=status, headers=headers)
    return ui.error_page(request, status, message, headers)


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    """No media, no scripts, no framing, no caching of case data, no referrer leaks."""
    response.headers.setdefault("Content-Security-Policy", ui.CSP)
    response.headers["X-Content-Type-Options"] = "nosniff"
    # same-origin, not no-referrer: with no-referrer browsers send "Origin: null" on our own
    # forms, and the Origin check is part of what makes them CSRF-safe.
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cache-Control"] = "no-store"


async def _load_near_index(app: web.Application) -> None:
    """Load the near-hash index in the background: the API answers meanwhile."""

    def load() -> None:
        try:
            app[STORE].load_near_index()
        except db_errors.SQLAlchemyError as e:  # the first near query loads it instead
            log.warning("near-hash index not preloaded: %s", str(e).splitlines()[0])

    app[NEAR_LOADER] = asyncio.get_running_loop().run_in_executor(None, load)


async def _close(app: web.Application) -> None:
    app[REDIS].close()
    app[STORE].close()
