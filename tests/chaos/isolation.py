"""Machinery of the tenant-isolation matrix (tests/chaos/test_isolation.py).

- `Findings`: what the matrix found, by kind; the summary line is computed from it.
- `Victim`: tenant A's rows and the strings that must never reach anyone else.
- `bad_tokens`: expired, forged, unsigned and wrong-kind tokens carrying A's own claims.
- `route_inventory`: every route the app serves (HTTP, WebSocket, mounts), so a new one is
  automatically part of the matrix, or makes it fail until it is.
- `build_request`: a request for a route, from its OpenAPI operation, that points at A's rows.
- `snapshot`: every row of A, to compare before and after.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import orjson
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from sqlalchemy import Table, select
from starlette.routing import Mount, WebSocketRoute

from atende.context import AppContext
from atende.db.models import Base
from atende.services.auth import mint_token
from atende.types import Role

PROBE_TEXT = "isolation probe"


# -- findings ---------------------------------------------------------------------------------
@dataclass
class Findings:
    """Everything that went wrong, by kind: accepted, leak, existence, wrong answer, changed,
    uncovered. Empty means tenant A lost nothing."""

    items: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, where, detail)
    tried: Counter[str] = field(default_factory=Counter)

    def add(self, kind: str, where: str, detail: str) -> None:
        self.items.append((kind, where, detail[:400]))

    def count(self, kind: str) -> int:
        return sum(1 for k, _, _ in self.items if k == kind)

    def lost(self) -> str:
        kinds = ("accepted", "leak", "existence", "wrong answer", "changed", "uncovered")
        counts = ", ".join(f"{self.count(k)} {k}" for k in kinds)
        head = "nothing" if not self.items else f"{len(self.items)} findings"
        return f"{head} ({counts})"

    def describe(self) -> str:
        return "\n".join(f"[{kind}] {where}: {detail}" for kind, where, detail in self.items)


# -- tenant A ---------------------------------------------------------------------------------
@dataclass
class Victim:
    """Tenant A: the ids a request may name, and every string of A that must not leak."""

    ids: dict[str, str]  # path / body parameter name → A's value
    uuids: set[str]  # every A row id that may appear in a request
    markers: set[str]  # every A string that must never appear in another caller's answer
    session_name: str  # of A's sandbox session
    text: str  # what A's customer wrote

    def leaks(self, answer: str, request: str) -> list[str]:
        """A's strings in `answer` that the caller did not send itself."""
        return sorted(m for m in self.markers if m in answer and m not in request)

    def twin(self, text: str, twins: dict[str, str]) -> str:
        """`text` with every A id (and A's customer's phone) swapped for one that exists
        nowhere; `twins` keeps the swaps, so that answers can be compared."""
        for real in self.uuids:
            text = text.replace(real, twins.setdefault(real, str(uuid.uuid4())))
        phone = self.ids["phone_number"]
        nobody = f"55119{uuid.uuid4().int % 10**8:08d}"
        return text.replace(phone, twins.setdefault(phone, nobody))


def answer_text(response: httpx.Response) -> str:
    headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    return f"{headers}\n{response.text}"


# The 5xx answers SPEC asks for, each with its own error_code; any other 5xx is a bug.
DELIBERATE_5XX = {
    502: {"GATEWAY_ERROR", "MESSAGE_SEND_FAILED"},
    503: {"WHATSAPP_DISCONNECTED", "WEBHOOK_RETRY_LATER"},
}


def server_error(response: httpx.Response) -> str | None:
    """None unless `response` is a 5xx other than a deliberate one."""
    if response.status_code < 500:
        return None
    try:
        code = response.json().get("error_code")
    except ValueError:
        code = None
    if code in DELIBERATE_5XX.get(response.status_code, set()):
        return None
    return f"server error {response.status_code}: {response.text[:200]}"


def refusal_problem(response: httpx.Response, statuses: set[int], code: str | None) -> str | None:
    """None when `response` is a JSON refusal with one of `statuses` (and `code`, if given)."""
    if response.status_code not in statuses:
        return f"{response.status_code} (wanted {sorted(statuses)}): {response.text[:200]}"
    if not response.headers.get("content-type", "").startswith("application/json"):
        return f"refusal is not JSON: {response.headers.get('content-type')}"
    body = response.json()
    if not isinstance(body, dict) or not body.get("error_code") or not body.get("message"):
        return f"refusal without error_code/message: {response.text[:200]}"
    if code is not None and body["error_code"] != code:
        return f"error_code {body['error_code']} (wanted {code})"
    return None


# -- credentials --------------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(claims: dict[str, Any]) -> str:
    """`alg: none`: A's claims with no signature at all."""
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


def bad_tokens(ctx: AppContext, tenant_id: uuid.UUID, admin_id: uuid.UUID) -> dict[str, str]:
    """Tokens with A's admin claims that must all be refused with 401."""
    settings = ctx.settings

    def mint(kind: str = "access", ttl: int | None = None) -> str:
        return mint_token(
            settings,
            user_id=admin_id,
            tenant_id=tenant_id,
            role=Role.ADMIN.value,
            kind=kind,
            ttl_secs=ttl,
        )

    claims = jwt.decode(mint(), options={"verify_signature": False})
    return {
        "expired": mint(ttl=-10),
        "wrong secret": jwt.encode(claims, "not-the-server-secret-0123456789", algorithm="HS256"),
        "unsigned": unsigned_token(claims),
        "refresh as access": mint(kind="refresh"),
        "garbage": "x.y.z",
    }


# -- the routes the app serves ----------------------------------------------------------------
@dataclass(frozen=True, order=True)
class RouteKey:
    method: str  # an HTTP method, "WS" for a WebSocket, "MOUNT" for a mounted app
    path: str

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def route_inventory(app: FastAPI) -> list[RouteKey]:
    keys: set[RouteKey] = set()
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        path = context.path or "/"
        if isinstance(route, WebSocketRoute):  # FastAPI's APIWebSocketRoute is one too
            keys.add(RouteKey("WS", path))
        elif isinstance(route, Mount):
            keys.add(RouteKey("MOUNT", path))
        else:
            keys.update(RouteKey(m, path) for m in (context.methods or set()) - {"HEAD"})
    return sorted(keys)


# -- requests built from the OpenAPI ------------------------------------------------------------
@dataclass
class Probe:
    method: str
    url: str
    body: Any = None
    unknown_param: str | None = None  # a path parameter the matrix has no A value for

    def text(self) -> str:
        return f"{self.url} {orjson.dumps(self.body).decode() if self.body is not None else ''}"


def operation_of(spec: dict[str, Any], key: RouteKey) -> dict[str, Any]:
    found: dict[str, Any] = spec.get("paths", {}).get(key.path, {}).get(key.method.lower(), {})
    return found


def build_request(
    spec: dict[str, Any],
    key: RouteKey,
    values: dict[str, Any],
    query_values: dict[str, str],
    path_values: dict[str, str] | None = None,
) -> Probe:
    """A request for `key` whose path, query and body name A's rows wherever they can
    (`path_values`, when given, come first for the path: e.g. the caller's own rows)."""
    operation = operation_of(spec, key)
    url, unknown = key.path, None
    in_path = {**values, **(path_values or {})}
    for name in _names_in_path(key.path):
        if name in in_path:
            url = url.replace(f"{{{name}}}", str(in_path[name]))
        else:
            unknown = name
    params = [p for p in operation.get("parameters", []) if p.get("in") == "query"]
    query = {p["name"]: query_values[p["name"]] for p in params if p["name"] in query_values}
    if query:
        url += "?" + str(httpx.QueryParams(query))
    body = None
    schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    if "schema" in schema:
        body = example(spec, schema["schema"], values)
    return Probe(key.method, url, body, unknown)


def _names_in_path(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


def example(spec: dict[str, Any], schema: dict[str, Any], values: dict[str, Any]) -> Any:
    """A value valid for `schema`: A's value for a known property name, else the simplest one."""
    schema = _resolve(spec, schema)
    for branch_key in ("anyOf", "oneOf", "allOf"):
        if branch_key in schema:
            branches = [_resolve(spec, b) for b in schema[branch_key]]
            usable = [b for b in branches if b.get("type") != "null"] or branches
            return example(spec, usable[0], values)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return _object_example(spec, schema, values)
    simple: dict[str, Any] = {
        "string": str(uuid.uuid4()) if schema.get("format") == "uuid" else PROBE_TEXT,
        "integer": 1,
        "number": 1,
        "boolean": True,
        "array": [],
    }
    return simple.get(str(kind))


def _object_example(
    spec: dict[str, Any], schema: dict[str, Any], values: dict[str, Any]
) -> dict[str, Any]:
    properties: dict[str, Any] = schema.get("properties", {})
    wanted = set(schema.get("required", [])) | (set(properties) & set(values))
    out: dict[str, Any] = {}
    for name in sorted(wanted):
        known = name in values
        out[name] = values[name] if known else example(spec, properties.get(name, {}), values)
    return out


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    return schema


# -- tenant A's rows --------------------------------------------------------------------------
Snapshot = dict[str, list[tuple[str, ...]]]


async def snapshot(ctx: AppContext, tenant_id: uuid.UUID) -> Snapshot:
    """Every row of every table that belongs to the tenant, as text, in a stable order."""
    out: Snapshot = {}
    async with ctx.sessionmaker() as session:
        for table in Base.metadata.sorted_tables:
            stmt = select(table).where(_owned_by(table, tenant_id))
            stmt = stmt.order_by(*table.primary_key.columns)
            rows = (await session.execute(stmt)).all()
            out[table.name] = [tuple(str(v) for v in row) for row in rows]
    return out


def _owned_by(table: Table, tenant_id: uuid.UUID) -> Any:
    if table.name == "tenants":
        return table.c.id == tenant_id
    if "tenant_id" in table.c:
        return table.c.tenant_id == tenant_id
    if table.name == "webhook_events":  # owned through its session
        sessions = Base.metadata.tables["whatsapp_sessions"]
        owned = select(sessions.c.id).where(sessions.c.tenant_id == tenant_id)
        return table.c.session_id.in_(owned)
    raise AssertionError(f"table {table.name} has no tenant_id: teach the snapshot")


def snapshot_diff(before: Snapshot, after: Snapshot) -> list[str]:
    changes = []
    for table in sorted(set(before) | set(after)):
        old, new = set(before.get(table, [])), set(after.get(table, []))
        if old != new:
            changes.append(f"{table}: -{len(old - new)} +{len(new - old)} rows ({new - old})")
    return changes
