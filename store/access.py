"""Who may use the API and what they did: tokens (kept as hashes), web sessions, audit log."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, delete, func, insert, or_, select, true, update

from store.schema import TOKEN_ROLES, api_tokens, audit_log, web_sessions

# Prefix of every token, so a leaked one is easy to recognise (and to grep for) in logs.
TOKEN_PREFIX = "hl_"


def digest(secret: str) -> str:
    """The stored form of a token or session secret: they are random, so sha256 suffices."""
    return hashlib.sha256(secret.encode()).hexdigest()


class AccessStore:
    """Store methods for API tokens, web sessions and the audit log (mixed into Store)."""

    engine: Engine

    def create_token(self, name: str, role: str) -> tuple[int, str]:
        """A new token's id and secret; the secret is shown once and only its hash is kept."""
        if role not in TOKEN_ROLES:
            raise ValueError(f"role must be one of {', '.join(TOKEN_ROLES)}, not {role!r}")
        if not name.strip():
            raise ValueError("a token needs a name that says who or what uses it")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            token_id = conn.execute(
                insert(api_tokens).values(
                    name=name.strip(), role=role, token_sha256=digest(secret), created_at=_now()
                )
            ).inserted_primary_key[0]
        return token_id, secret

    def revoke_token(self, token_id: int) -> bool:
        """Revoke a token and end its web sessions; False if no active token has this id."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(api_tokens)
                .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=_now())
            )
            conn.execute(delete(web_sessions).where(web_sessions.c.token_id == token_id))
        return result.rowcount == 1

    def tokens(self) -> list[dict]:
        """Every token ever created (never the secrets), oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    api_tokens.c.id,
                    api_tokens.c.name,
                    api_tokens.c.role,
                    api_tokens.c.created_at,
                    api_tokens.c.revoked_at,
                ).order_by(api_tokens.c.id)
            ).mappings()
            return [iso_values(row) for row in rows]

    def token_for(self, secret: str) -> dict | None:
        """The active token with this secret: {id, name, role}, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(api_tokens.c.id, api_tokens.c.name, api_tokens.c.role).where(
                    api_tokens.c.token_sha256 == digest(secret),
                    api_tokens.c.revoked_at.is_(None),
                )
            ).one_or_none()
        return None if row is None else dict(row._mapping)

    def open_session(self, token_id: int, ttl: timedelta) -> tuple[str, str]:
        """A web session for a token: (session secret for the cookie, CSRF token for forms)."""
        secret, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = _now()
        with self.engine.begin() as conn:
            conn.execute(delete(web_sessions).where(web_sessions.c.expires_at < now))
            conn.execute(
                insert(web_sessions).values(
                    session_sha256=digest(secret),
                    token_id=token_id,
                    csrf=csrf,
                    created_at=now,
                    expires_at=now + ttl,
                )
            )
        return secret, csrf

    def session_for(self, secret: str) -> dict | None:
        """{id, name, role, csrf} of a live session whose token is still active, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(api_tokens.c.id, api_tokens.c.name, api_tokens.c.role, web_sessions.c.csrf)
                .join(api_tokens)
                .where(
                    web_sessions.c.session_sha256 == digest(secret),
                    web_sessions.c.expires_at > _now(),
                    api_tokens.c.revoked_at.is_(None),
                )
            ).one_or_none()
        return None if row is None else dict(row._mapping)

    def close_session(self, secret: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                delete(web_sessions).where(web_sessions.c.session_sha256 == digest(secret))
            )

    def audit(
        self, who: dict | None, action: str, target: str | None = None, detail: dict | None = None
    ) -> None:
        """Record that `who` (a token_for() dict, None if unknown) did `action` to `target`."""
        who = who or {}
        with self.engine.begin() as conn:
            conn.execute(
                insert(audit_log).values(
                    at=_now(),
                    token_id=who.get("id"),
                    actor=who.get("name", "-"),
                    role=who.get("role"),
                    action=action,
                    target=target,
                    detail=detail or {},
                )
            )

    def audit_entries(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[int, list[dict]]:
        """(total, newest-first page) of audit entries; `action` also matches its prefix
        ("lists" finds "lists.import"), `target` is exact."""
        conditions = []
        if actor:
            conditions.append(audit_log.c.actor == actor)
        if action:
            conditions.append(
                or_(audit_log.c.action == action, audit_log.c.action.startswith(action + "."))
            )
        if target:
            conditions.append(audit_log.c.target == target)
        if since:
            conditions.append(audit_log.c.at >= since)
        if until:
            conditions.append(audit_log.c.at < until)
        where = and_(true(), *conditions)
        with self.engine.connect() as conn:
            total = conn.scalar(select(func.count()).select_from(audit_log).where(where))
            rows = conn.execute(
                select(audit_log)
                .where(where)
                .order_by(audit_log.c.at.desc(), audit_log.c.id.desc())
                .offset(offset)
                .limit(limit)
            ).mappings()
            return total, [iso_values(row) for row in rows]


def iso_values(row: Any) -> dict:
    """A row mapping as JSON-ready values: datetimes become ISO 8601 text."""
    return {
        key: value.isoformat() if isinstance(value, datetime) else value
        for key, value in row.items()
    }


def _now() -> datetime:
    return datetime.now(UTC)
