"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from atende.api.deps import CtxDep

router = APIRouter(tags=["ops"])


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


# The 503 is documented: its body is not the error shape, and a load balancer reads it.
@router.get(
    "/ready",
    response_model=None,
    responses={200: {"model": Readiness}, 503: {"model": Readiness, "description": "Not ready"}},
)
async def ready(ctx: CtxDep) -> dict[str, Any] | JSONResponse:
    """The database (and Redis, when configured) answer."""
    checks: dict[str, str] = {}
    try:
        async with ctx.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    ping = getattr(ctx.bus, "ping", None)
    if ping is not None:
        try:
            await ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"error: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    body = {"status": "ready" if ok else "not ready", "checks": checks}
    return body if ok else JSONResponse(body, status_code=503)
