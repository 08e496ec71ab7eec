"""The OpenAPI 3 description of the JSON API, served at /api/openapi.json.

Query parameters are declared here once: handlers parse and validate them with
`parse_query`, so the description and the behaviour cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from store.schema import LIST_KINDS, REPORT_STATES, TAKEDOWN_STATES, TOKEN_ROLES
from store.search import HASH_COLUMNS, NEAR_TYPES, SORTS

Schema = dict[str, Any]

STRING: Schema = {"type": "string", "minLength": 1, "maxLength": 2048}
WHEN: Schema = {
    "type": "string",
    "minLength": 1,
    "maxLength": 64,
    "description": "ISO 8601 date or date-time; UTC when it has no offset",
}
HEX_HASH: Schema = {"type": "string", "pattern": "^[0-9a-fA-F]{16,64}$"}


def integer(minimum: int, maximum: int) -> Schema:
    return {"type": "integer", "minimum": minimum, "maximum": maximum}


def one_of(values: Any) -> Schema:
    return {"type": "string", "enum": list(values)}


BOOLEAN: Schema = {"type": "boolean"}

PAGING = {
    "page": (integer(1, 100_000), "page number, from 1"),
    "per_page": (integer(1, 500), "results per page (default 50)"),
}
SEARCH = {
    "url": (STRING, "substring of the reported or final URL (case-insensitive)"),
    "domain": (STRING, "host of any URL of the report, or a parent domain of it"),
    "server_ip": (STRING, "IP address a scan of the report was served from"),
    "hash": (HEX_HASH, "exact hash of an image (md5, sha1, sha256, phash or pdq)"),
    "hash_type": (one_of(HASH_COLUMNS), "signal type of `hash` when its length is ambiguous"),
    "near": (HEX_HASH, "perceptual hash (phash: 16 hex digits, pdq: 64)"),
    "near_type": (one_of(NEAR_TYPES), "signal type of `near` (default: from its length)"),
    "distance": (integer(0, 256), "Hamming distance for `near` (default: the match threshold)"),
    "list": (STRING, "name of a hash list a match came from"),
    "category": (STRING, "category of a match"),
    "state": (one_of(REPORT_STATES), "report state"),
    "takedown": (one_of(TAKEDOWN_STATES), "takedown state of a referred report"),
    "since": (WHEN, "received at or after"),
    "until": (WHEN, "received before"),
    "retro": (BOOLEAN, "has (true) or lacks (false) a retroactive match"),
    "matched": (BOOLEAN, "a scan of the report matched (true) or none did (false)"),
    "sort": (one_of(SORTS), "sort key (default received_at)"),
    "order": (one_of(["desc", "asc"]), "sort order (default desc)"),
}
PIVOT = {
    "distance": (integer(0, 256), "Hamming distance for phash or pdq; omitted: exact"),
    **PAGING,
}
AUDIT = {
    "actor": (STRING, "token name"),
    "action": (STRING, "action, or its prefix before a dot (lists → lists.import)"),
    "target": (STRING, "target, e.g. report:12"),
    "since": (WHEN, "at or after"),
    "until": (WHEN, "before"),
    **PAGING,
}
EXPORT = {"format": (one_of(["csv", "json"]), "file format (default csv)"), **SEARCH}
IMPORT = {
    "kind": (one_of(LIST_KINDS), "kind of a new list: known, or allow (default known)"),
    "category": (STRING, "category of a new list"),
}
EVIDENCE = {"format": (one_of(["json", "text"]), "json (default) or printable text")}


def parse_query(query: Mapping[str, str], params: Mapping[str, tuple[Schema, str]]) -> dict:
    """The declared parameters present in `query`, converted; HTTP 400 names a bad one."""
    values = {}
    for name, (schema, _) in params.items():
        raw = query.get(name, "").strip()
        if raw:
            values[name] = convert(raw, schema, name)
    return values


def convert(raw: str, schema: Schema, name: str) -> Any:
    """One query value by its schema (type, enum, bounds, length, dates)."""
    if schema["type"] == "integer":
        try:
            value = int(raw)
        except ValueError:
            raise bad_request(f"{name} must be a whole number, not {raw[:40]!r}") from None
        if not schema["minimum"] <= value <= schema["maximum"]:
            raise bad_request(f"{name} must be between {schema['minimum']} and {schema['maximum']}")
        return value
    if schema["type"] == "boolean":
        if raw.lower() not in ("true", "false"):
            raise bad_request(f"{name} must be true or false")
        return raw.lower() == "true"
    if "enum" in schema and raw not in schema["enum"]:
        raise bad_request(f"{name} must be one of {', '.join(schema['enum'])}")
    if len(raw) > schema.get("maxLength", len(raw)):
        raise bad_request(f"{name} is longer than {schema['maxLength']} characters")
    if schema is WHEN:
        return parse_time(raw, name)
    return raw


def parse_time(raw: str, name: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw.replace(" ", "T", 1) if len(raw) > 10 else raw)
    except ValueError:
        raise bad_request(f"{name}: {raw[:40]!r} is not an ISO 8601 date or date-time") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=message)


def _parameters(params: Mapping[str, tuple[Schema, str]]) -> list[Schema]:
    return [
        {"name": name, "in": "query", "schema": schema, "description": text}
        for name, (schema, text) in params.items()
    ]


def _path(name: str, schema: Schema, text: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": text}


def _json_body(properties: dict[str, Schema], required: list[str]) -> Schema:
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": properties,
                    "required": required,
                    "additionalProperties": False,
                }
            }
        },
    }


def _op(
    summary: str,
    tag: str,
    *,
    parameters: list[Schema] | None = None,
    body: Schema | None = None,
    ok: str = "200",
    content: str = "application/json",
    public: bool = False,
) -> Schema:
    op: Schema = {
        "summary": summary,
        "tags": [tag],
        "responses": {
            ok: {"description": "OK", "content": {content: {"schema": {}}}},
            "400": {"$ref": "#/components/responses/Error"},
            "503": {"$ref": "#/components/responses/Error"},
        },
    }
    if not public:
        op["responses"].update(
            {code: {"$ref": "#/components/responses/Error"} for code in ("401", "403", "404")}
        )
    else:
        op["security"] = []
    if parameters:
        op["parameters"] = parameters
    if body:
        op["requestBody"] = body
    return op


REPORT_ID = _path("report_id", integer(1, 2**31 - 1), "report id")
LIST_NAME = _path("name", {**STRING, "maxLength": 200}, "list name")
KEYS: Schema = {
    "type": "array",
    "minItems": 1,
    "maxItems": 10_000,
    "items": {"type": "string", "minLength": 1, "maxLength": 256},
}
SUBMIT = {
    "url": {"type": "string", "minLength": 1, "maxLength": 8192},
    "source": {"type": "string", "maxLength": 200},
}
ENTRY = {
    "signal_type": one_of(HASH_COLUMNS),
    "hash": HEX_HASH,
}


def document() -> Schema:
    """The OpenAPI document of every JSON route, health and metrics included."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "hotline-scanner API",
            "version": "1",
            "description": (
                "Reports, scans, hashes and matches of hotline-scanner; never media. Every "
                "route except /healthz and /readyz needs `Authorization: Bearer <token>` "
                "(tokens: `hotline tokens create --role intake|analyst|admin --name N`)."
            ),
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Error": {
                    "description": "what went wrong and what to do",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"error": {"type": "string"}},
                            }
                        }
                    },
                }
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/healthz": {"get": _op("the process answers", "operations", public=True)},
            "/readyz": {
                "get": _op("database and Redis answer (503 if not)", "operations", public=True)
            },
            "/metrics": {
                "get": _op(
                    "Prometheus metrics (any role)",
                    "operations",
                    content="text/plain",
                )
            },
            "/api/openapi.json": {"get": _op("this document (any role)", "operations")},
            "/api/reports": {
                "post": _op(
                    "store a reported URL and queue its scan (intake)",
                    "reports",
                    body=_json_body(SUBMIT, ["url"]),
                    ok="201",
                )
            },
            "/api/reports/bulk": {
                "post": _op(
                    "store up to 1000 reports at once (intake)",
                    "reports",
                    body=_json_body(
                        {
                            "reports": {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": 1000,
                                "items": {
                                    "type": "object",
                                    "properties": SUBMIT,
                                    "required": ["url"],
                                },
                            }
                        },
                        ["reports"],
                    ),
                    ok="201",
                )
            },
            "/api/reports/{report_id}": {
                "get": _op(
                    "a report: scans, images (hashes, metadata), matches, takedown (analyst)",
                    "reports",
                    parameters=[REPORT_ID],
                )
            },
            "/api/reports/{report_id}/evidence": {
                "get": _op(
                    "evidence summary for the police: URLs, redirects, IPs, times, hashes, "
                    "matches; no media (analyst)",
                    "reports",
                    parameters=[REPORT_ID, *_parameters(EVIDENCE)],
                )
            },
            "/api/reports/{report_id}/refer": {
                "post": _op(
                    "refer the report to a party for takedown (analyst)",
                    "reports",
                    parameters=[REPORT_ID],
                    body=_json_body(
                        {"party": {**STRING, "maxLength": 200}, "notice_sent_at": WHEN},
                        ["party"],
                    ),
                )
            },
            "/api/search": {
                "get": _op(
                    "search reports (analyst)",
                    "search",
                    parameters=_parameters({**SEARCH, **PAGING}),
                )
            },
            "/api/search/export": {
                "get": _op(
                    "every report of a search as CSV or JSON (analyst)",
                    "search",
                    parameters=_parameters(EXPORT),
                )
            },
            "/api/hashes/{signal_type}/{hash}": {
                "get": _op(
                    "hash pivot: every sighting of a hash or near hash (analyst)",
                    "search",
                    parameters=[
                        _path("signal_type", one_of(HASH_COLUMNS), "signal type"),
                        _path("hash", HEX_HASH, "the hash, hex"),
                        *_parameters(PIVOT),
                    ],
                )
            },
            "/api/classify": {
                "post": _op(
                    "assess once: put a seen image hash on the hotline's own list (analyst)",
                    "search",
                    body=_json_body(
                        {**ENTRY, "category": {**STRING, "maxLength": 100}},
                        [
                            "signal_type",
                            "hash",
                            "category",
                        ],
                    ),
                )
            },
            "/api/stats": {"get": _op("statistics (analyst)", "search")},
            "/api/lists": {"get": _op("hash lists with entry counts (analyst)", "lists")},
            "/api/lists/{name}/entries": {
                "post": _op(
                    "import a hash list file (CSV or ThreatExchange/HMA lines) into a list, "
                    "created if missing; kind=allow makes an allow list (admin)",
                    "lists",
                    parameters=[LIST_NAME, *_parameters(IMPORT)],
                    body={
                        "required": True,
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                )
            },
            "/api/lists/{name}/disable": {
                "post": _op(
                    "disable entries of a list, by ref or hash (admin)",
                    "lists",
                    parameters=[LIST_NAME],
                    body=_json_body({"keys": KEYS}, ["keys"]),
                )
            },
            "/api/lists/{name}/enable": {
                "post": _op(
                    "enable entries again, by ref or hash; they are retro-matched (admin)",
                    "lists",
                    parameters=[LIST_NAME],
                    body=_json_body({"keys": KEYS}, ["keys"]),
                )
            },
            "/api/audit": {
                "get": _op(
                    "the audit log, newest first (admin)", "access", parameters=_parameters(AUDIT)
                )
            },
            "/api/tokens": {
                "get": _op("tokens, never their secrets (admin)", "access"),
                "post": _op(
                    "create a token; its secret is in this response only (admin)",
                    "access",
                    body=_json_body(
                        {"name": {**STRING, "maxLength": 200}, "role": one_of(TOKEN_ROLES)},
                        ["name", "role"],
                    ),
                    ok="201",
                ),
            },
            "/api/tokens/{token_id}": {
                "delete": _op(
                    "revoke a token and end its web sessions (admin)",
                    "access",
                    parameters=[_path("token_id", integer(1, 2**31 - 1), "token id")],
                )
            },
        },
    }
