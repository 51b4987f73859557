"""Request dependencies: the app context and the authenticated, tenant-scoped caller."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request

from atende.context import AppContext
from atende.errors import ErrorBody, Forbidden, InvalidInput, Unauthorized
from atende.sanitize import contains_nul
from atende.services.access import authorize
from atende.services.auth import Principal

# Offsets past any real list, yet inside a 64-bit SQL integer: a larger one was a 500 (overflow).
MAX_OFFSET = 1_000_000_000
MAX_PAGE = 10_000_000  # seed 000's `page` times its largest `limit` (100) stays under MAX_OFFSET

# Every refusal has the ErrorBody shape (app.py's handlers). Declaring it as "4XX" also keeps
# FastAPI from documenting a 422 that this app never sends (invalid input is 400 INVALID_INPUT).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorBody, "description": "Refused: invalid input, credentials or access"},
    502: {"model": ErrorBody, "description": "The WhatsApp gateway failed"},
    503: {"model": ErrorBody, "description": "WhatsApp is disconnected, or try again later"},
}
# For a route whose success is not JSON: FastAPI would document `model` responses in the route's
# own media type, yet refusals are JSON. (ErrorBody is in the components through ERROR_RESPONSES.)
_ERROR_JSON = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
JSON_ERRORS_OF_TEXT_ROUTE: dict[int | str, dict[str, Any]] = {
    code: {"description": spec["description"], "content": _ERROR_JSON}
    for code, spec in ERROR_RESPONSES.items()
}


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        return None
    return header[7:].strip() or None


async def get_principal(request: Request) -> Principal:
    """The caller, checked against its user's current state (not only the token's signature)."""
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("Missing bearer token")
    return await authorize(get_ctx(request), token)


def client_ip(request: Request) -> str | None:
    """The caller's address (uvicorn's proxy_headers resolve X-Forwarded-For from trusted
    proxies only)."""
    return request.client.host if request.client else None


def require_admin(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    if not principal.is_admin:
        raise Forbidden("Administrators only")
    return principal


CtxDep = Annotated[AppContext, Depends(get_ctx)]
CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
AdminPrincipal = Annotated[Principal, Depends(require_admin)]


def same_tenant(principal: Principal, tenant_id: uuid.UUID) -> None:
    """A token of tenant X on tenant Y's path is 403."""
    if principal.tenant_id != tenant_id:
        raise Forbidden("You do not have access to this tenant")


async def refuse_nul_characters(request: Request) -> None:
    """U+0000 anywhere in the input is a 400 on every backend.

    PostgreSQL text can not hold it, so it used to fail inside a query as a 500 (and was stored
    as is on SQLite); no real client sends it.
    """
    if contains_nul(request.scope.get("path", "")) or contains_nul(
        request.query_params.multi_items()
    ):
        raise InvalidInput("Input must not contain NUL (U+0000) characters")
    body = await request.body()
    if b"\\u0000" not in body and b"\x00" not in body:
        return
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return  # not JSON: the route's own body validation answers 400
    if contains_nul(payload):
        raise InvalidInput("Input must not contain NUL (U+0000) characters")
