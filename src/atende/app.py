"""create_app(settings): routers, middleware, lifespan, static web inbox."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles

from atende import docs, metrics
from atende.api import auth, chat, conversations, health, users, webhooks
from atende.api.deps import ERROR_RESPONSES, refuse_nul_characters
from atende.config import Settings
from atende.context import AppContext, build_context
from atende.db.models import WhatsAppSession
from atende.errors import AtendeError
from atende.events import log as event_log
from atende.limits import BodyLimits
from atende.logs import install_redaction
from atende.outbox import Outbox
from atende.providers import PROVIDERS
from atende.providers.sandbox import SandboxProvider
from atende.realtime import atendimento_ws, conversations_ws, presence, socketio_server
from atende.security_headers import SECURITY_HEADERS, SecurityHeaders
from atende.services import messages as messages_svc
from atende.services.sessions import check_secret_key
from atende.types import MessageStatus, ProviderName

logger = logging.getLogger(__name__)
WEB_DIR = Path(__file__).resolve().parent / "web"
PRUNE_EVERY_SECS = 600.0
SANDBOX_ACK_RETRIES = 100
SANDBOX_ACK_RETRY_SECS = 0.05

API_GUARDS = [Depends(refuse_nul_characters)]
_STATUS_CODES = {
    400: "INVALID_INPUT",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    429: "RATE_LIMIT_EXCEEDED",
}


def install_providers(ctx: AppContext) -> None:
    """The gateways, plus the sandbox whose acks travel the same status path as webhooks."""
    ctx.providers.update(PROVIDERS)

    async def sandbox_ack(session_id: str, wamid: str, status: MessageStatus) -> None:
        async with ctx.reader() as session:
            row = await session.get(WhatsAppSession, uuid.UUID(session_id))
        if row is None:
            return
        # Like a real gateway redelivering an ack that arrived before the send was recorded.
        for _ in range(SANDBOX_ACK_RETRIES):
            outcome = await messages_svc.apply_status(
                ctx, session_row=row, wamid=wamid, status=status
            )
            if outcome != messages_svc.StatusOutcome.EARLY:
                return
            await asyncio.sleep(SANDBOX_ACK_RETRY_SECS)

    if not ctx.settings.sandbox_on:
        return  # a simulated phone anyone with a session secret could speak for: dev only
    ctx.providers[ProviderName.SANDBOX] = SandboxProvider(
        sandbox_ack, ctx.settings.sandbox_delivered_after_ms, ctx.settings.sandbox_read_after_ms
    )


async def _prune_forever(ctx: AppContext) -> None:
    window = timedelta(hours=ctx.settings.event_retention_hours)
    while True:
        try:
            async with ctx.sessionmaker() as session, session.begin():
                removed = await event_log.prune(session, window)
            if removed:
                logger.info("pruned %s events older than %s", removed, window)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("event pruning failed")
        await asyncio.sleep(PRUNE_EVERY_SECS)


def create_app(settings: Settings) -> FastAPI:
    install_redaction()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx = build_context(settings)
        await check_secret_key(ctx)
        install_providers(ctx)
        app.state.ctx = ctx
        presence.install(ctx)
        await ctx.bus.start(ctx.hub.dispatch)
        ctx.spawn(Outbox(ctx).run())
        ctx.spawn(_prune_forever(ctx))
        try:
            yield
        finally:
            sandbox = ctx.providers.get(ProviderName.SANDBOX)
            if isinstance(sandbox, SandboxProvider):
                await sandbox.close()
            await socketio_server.shutdown(app)
            await ctx.close()

    app = FastAPI(
        title="Atende",
        version="0.1.0",
        description="Multi-tenant, real-time WhatsApp customer-service inbox.",
        lifespan=lifespan,
        docs_url=None,  # served by atende.docs from local files
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    # Outermost last: security headers on every answer (413s included), CORS, then body limits.
    app.add_middleware(BodyLimits, settings=settings)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=sorted(settings.origins),
        allow_credentials=True,
        allow_methods=["*"],
        allow_headers=["*"],
    )
    app.add_middleware(SecurityHeaders)
    _install_error_handlers(app)
    app.include_router(health.router)
    for module in (auth, chat, conversations, users):
        app.include_router(module.router, responses=ERROR_RESPONSES, dependencies=API_GUARDS)
    # No NUL guard on webhooks: a gateway does not resend a 400, so they drop U+0000 instead.
    app.include_router(webhooks.router, responses=ERROR_RESPONSES)
    app.include_router(atendimento_ws.router)
    app.include_router(conversations_ws.router)
    _mount_extras(app, settings)
    docs.install(app)
    if WEB_DIR.is_dir() and (WEB_DIR / "index.html").exists():
        app.mount("/", StaticFiles(directory=WEB_DIR, html=True), name="web")
    return app


def _mount_extras(app: FastAPI, settings: Settings) -> None:
    """Routers added by later modules (sessions, media, Socket.IO) when present."""
    app.include_router(metrics.router)
    socketio_server.mount(app, settings)  # before the web inbox's catch-all mount at "/"
    modules = ["atende.api.sessions", "atende.api.media"]
    if settings.sandbox_on:  # the simulator's routes exist only while the sandbox does
        modules.append("atende.api.sandbox")
    for name in modules:
        try:
            module = __import__(name, fromlist=["router"])
        except ImportError:
            continue
        app.include_router(module.router, responses=ERROR_RESPONSES, dependencies=API_GUARDS)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AtendeError)
    async def atende_error(_: Request, exc: AtendeError) -> JSONResponse:
        headers = {}
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        return JSONResponse(exc.to_dict(), status_code=exc.http_status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": ".".join(str(p) for p in err.get("loc", ())[1:]), "problem": err.get("msg")}
            for err in exc.errors()
        ]
        return JSONResponse(
            {
                "error_code": "INVALID_INPUT",
                "message": "Invalid request",
                "details": {"errors": problems},
            },
            status_code=400,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "HTTP_ERROR")
        return JSONResponse(
            {"error_code": code, "message": str(exc.detail)}, status_code=exc.status_code
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error")
        return JSONResponse(
            {"error_code": "INTERNAL_ERROR", "message": "Internal server error"},
            status_code=500,
            headers=SECURITY_HEADERS,  # answered outside the middleware stack
        )
