"""Tenant isolation matrix: nothing of tenant A can be reached, changed or seen by anyone else.

Every route the app serves is enumerated from the app itself (tests/chaos/isolation.py), so a
new route is part of the matrix at once, or fails it until it is listed here as public:

- REST: each route, with a request built from its OpenAPI operation that names A's rows, is
  sent with no token, an expired token, one signed with the wrong secret, an unsigned one, a
  refresh token and garbage (all 401 UNAUTHORIZED), and with tenant B's token (403 on A's
  tenant path, 404 for A's rows, and exactly the answer B gets for ids that exist nowhere, so
  existence does not leak).
- Sockets: each dialect (A /ws/chat, B /api/v1/conversations/ws, C Socket.IO) refuses every bad
  credential with a reason; B's own sockets replay only B's events and can not touch A's rows.
- Webhooks: each provider's endpoints (by name, by shape, and A's session's own token URL)
  refuse a delivery for A's session with no credentials, a forged signature / wrong key, or
  tenant B's session secret; an unknown name or token gets the very answer a known one with
  wrong credentials gets; B's own token URL carrying A's session name stores nothing.

Throughout, A's sockets must hear nothing, no answer to anyone else may contain any of A's
strings, and A's rows must be exactly as they were.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import socketio
from sqlalchemy import func, select
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from atende.db.models import Message, User, WhatsAppSession
from atende.db.models import Tenant as TenantRow
from atende.services import sessions as sessions_svc
from atende.services.auth import mint_token
from atende.types import ProviderName
from tests.chaos.isolation import (
    PROBE_TEXT,
    Findings,
    Probe,
    RouteKey,
    Victim,
    answer_text,
    bad_tokens,
    build_request,
    refusal_problem,
    route_inventory,
    server_error,
    snapshot,
    snapshot_diff,
)
from tests.chaos.summary import report
from tests.fakes.cloud import FakeCloud
from tests.fakes.connection_service import FakeConnectionService
from tests.fakes.evolution import FakeEvolution
from tests.fakes.waha import FakeWaha
from tests.harness import WAIT_SECS, Tenant, WsClient
from tests.realtime.sioclient import SioClient, sio_client

# Routes anyone may call; they are still called, without credentials, and scanned for A's data.
PUBLIC: dict[RouteKey, str] = {
    RouteKey("GET", "/health"): "liveness probe",
    RouteKey("GET", "/ready"): "readiness probe",
    RouteKey("GET", "/metrics"): "Prometheus scrape (no tenant labels)",
    RouteKey("GET", "/openapi.json"): "the API description",
    RouteKey("GET", "/docs"): "Swagger UI",
    RouteKey("MOUNT", "/docs/assets"): "Swagger UI's files",
    RouteKey("MOUNT", "/"): "the web inbox's static files",
}
# What to GET for a public mount whose own path is no file.
PUBLIC_PROBES = {RouteKey("MOUNT", "/docs/assets"): "/docs/assets/swagger-ui.css"}
LOGIN = RouteKey("POST", "/api/v1/auth/login")
REFRESH = RouteKey("POST", "/api/v1/auth/refresh")
WEBHOOK_ROUTES = {
    RouteKey("POST", "/api/webhooks/whatsapp"),
    RouteKey("POST", "/api/webhooks/{provider}"),
    RouteKey("POST", "/api/webhooks/{provider}/{token_or_event}"),
    RouteKey("POST", "/api/webhooks/{provider}/{session_token}/{event_slug}"),
    RouteKey("GET", "/api/webhooks/{provider}"),
    RouteKey("GET", "/api/webhooks/{provider}/{session_token}"),
}
# Routes that end the caller's own sessions when B calls them in its own scope: probed last,
# then B's tokens are minted again for the rest of the matrix.
SESSION_ENDING = {
    RouteKey("POST", "/api/v1/auth/logout"),
    RouteKey("POST", "/api/v1/auth/password"),
}
DIALECT_A = RouteKey("WS", "/ws/chat")
DIALECT_B = RouteKey("WS", "/api/v1/conversations/ws")
DIALECT_C = RouteKey("MOUNT", "/socket.io")
NOT_JWT = {*PUBLIC, LOGIN, REFRESH, *WEBHOOK_ROUTES, DIALECT_A, DIALECT_B, DIALECT_C}

GATEWAYS = (
    ProviderName.SANDBOX,
    ProviderName.EVOLUTION,
    ProviderName.WAHA,
    ProviderName.CLOUD,
    ProviderName.CONNECTION_SERVICE,
)
INTRUDER_PHONE = "5521976543210"
B_PHONE = "5531987654321"  # tenant B's own customer
Frames = list[dict[str, Any]]


# -- the world: tenants A and B, their rows, and what the matrix found ------------------------
@dataclass
class Gateway:
    provider: ProviderName
    a_name: str
    a_secret: str
    b_name: str
    b_secret: str
    a_token: str  # A's session's own webhook URL token: as secret as its secret
    b_token: str


@dataclass
class World:
    a: Tenant
    b: Tenant
    victim: Victim
    gateways: list[Gateway]
    bad: dict[str, str]  # credential name → token with A's claims that must be refused
    spec: dict[str, Any]
    intruder_text: str
    b_rows: dict[str, str]  # B's own rows, by path parameter name
    findings: Findings = field(default_factory=Findings)
    exercised: set[RouteKey] = field(default_factory=set)

    @property
    def base(self) -> str:
        return self.a.server.base_url

    def leak_scan(self, where: str, answer: str, request: str) -> None:
        for marker in self.victim.leaks(answer, request):
            self.findings.add("leak", where, f"answer contains A's {marker!r}")


def _tag() -> str:
    return uuid.uuid4().hex[:10]


async def _gateway(a: Tenant, b: Tenant, provider: ProviderName) -> Gateway:
    """A session of `provider` in each tenant, each with its own webhook secret."""
    if provider == ProviderName.SANDBOX:
        tokens = [await _token_of(t) for t in (a, b)]
        return Gateway(
            provider, a.session_name, a.webhook_secret, b.session_name, b.webhook_secret, *tokens
        )
    names: list[str] = []
    secrets: list[str] = []
    tokens = []
    for tenant in (a, b):
        name = str(uuid.uuid4().int)[:15] if provider == ProviderName.CLOUD else f"iso-{_tag()}"
        secret = f"whsec-{_tag()}"
        row = await sessions_svc.create_session(
            tenant.server.ctx,
            tenant_id=tenant.id,
            provider=provider,
            name=name,
            base_url="http://127.0.0.1:9",  # never called: nothing here connects or sends
            webhook_secret=secret,
            options={"verify_token": f"vt-{_tag()}"} if provider == ProviderName.CLOUD else {},
        )
        names.append(name)
        secrets.append(secret)
        tokens.append(row.webhook_token)
    return Gateway(provider, names[0], secrets[0], names[1], secrets[1], tokens[0], tokens[1])


async def _token_of(tenant: Tenant) -> str:
    async with tenant.server.ctx.reader() as session:
        row = await session.get(WhatsAppSession, tenant.session_id)
    assert row is not None
    return row.webhook_token


async def _seed_victim(a: Tenant, gateways: list[Gateway]) -> Victim:
    """A customer writes to A (text and an image); A's ids and strings are collected."""
    tag = _tag()
    phone = f"55119{random.randrange(10**8):08d}"
    text, push_name = f"segredo-{tag}", f"Cliente{tag}"
    assert (await a.customer_says(text, phone=phone, push_name=push_name)).status_code == 200
    async with a.http() as http:
        image = await http.post(
            "/api/webhooks/sandbox",
            json={
                "session": a.session_name,
                "from": phone,
                "type": "image",
                "media_url": f"{a.server.base_url}/gone/{tag}.jpg",
                "caption": f"foto-{tag}",
                "id": f"img-{tag}",
            },
            headers={"X-Webhook-Secret": a.webhook_secret},
        )
        assert image.status_code == 200, image.text
        conv = (await http.get("/api/v1/conversations", headers=a.auth())).json()[0]
        messages = (
            await http.get(f"/api/v1/conversations/{conv['id']}/messages", headers=a.auth())
        ).json()
    media_id = next(m["id"] for m in messages if m["message_type"] == "image")
    ids = {
        "tenant_id": str(a.id),
        "conversation_id": conv["id"],
        "phone_number": phone,
        "session_id": str(a.session_id),
        "message_id": media_id,
    }
    uuids = {*ids.values(), conv["contact_id"], *(m["id"] for m in messages)} - {phone}
    uuids |= {str(a.admin_id), str(a.agent_id)}
    names = await _tenant_strings(a)
    markers = {*uuids, phone, text, push_name, f"foto-{tag}", a.admin_token, a.agent_token}
    markers |= names | {s for g in gateways for s in (g.a_name, g.a_secret, g.a_token)}
    return Victim(ids=ids, uuids=uuids, markers=markers, session_name=a.session_name, text=text)


async def _tenant_strings(a: Tenant) -> set[str]:
    """A's name and its users' e-mail addresses."""
    async with a.server.ctx.sessionmaker() as session:
        name = (await session.execute(select(TenantRow.name).where(TenantRow.id == a.id))).scalar()
        emails = (await session.execute(select(User.email).where(User.tenant_id == a.id))).scalars()
        return {str(name), *emails}


async def _world(a: Tenant, b: Tenant) -> World:
    gateways = [await _gateway(a, b, provider) for provider in GATEWAYS]
    victim = await _seed_victim(a, gateways)
    assert (await b.customer_says(f"do B {_tag()}", phone=B_PHONE)).status_code == 200
    async with httpx.AsyncClient(base_url=a.server.base_url) as http:
        spec = (await http.get("/openapi.json")).json()
        b_conv = (await http.get("/api/v1/conversations", headers=b.auth())).json()[0]["id"]
        b_msgs = await http.get(f"/api/v1/conversations/{b_conv}/messages", headers=b.auth())
    b_rows = {
        "tenant_id": str(b.id),
        "conversation_id": b_conv,
        "session_id": str(b.session_id),
        "message_id": b_msgs.json()[0]["id"],
    }
    return World(
        a=a,
        b=b,
        victim=victim,
        gateways=gateways,
        bad=bad_tokens(a.server.ctx, a.id, a.admin_id),
        spec=spec,
        intruder_text=f"intruso-{_tag()}",
        b_rows=b_rows,
    )


# -- REST: every route with a token, x every credential -----------------------------------------
def _values(world: World) -> dict[str, Any]:
    """What a request names, wherever a parameter or body property has this name: A's rows."""
    v = world.victim
    return {
        **v.ids,
        "user_id": str(world.a.agent_id),
        "from": v.ids["phone_number"],
        "name": v.session_name,
        "provider": ProviderName.SANDBOX.value,
        "status": "closed",  # if a foreign status change were accepted, A's row would show it
        "message_type": "text",
        "text": PROBE_TEXT,
        "content": PROBE_TEXT,
        "message": PROBE_TEXT,
        "caption": PROBE_TEXT,
    }


def _query_values(world: World) -> dict[str, str]:
    return {
        "search": world.victim.text,
        "before": world.victim.ids["message_id"],
        "is_typing": "true",
    }


def _jwt_routes(world: World) -> list[RouteKey]:
    return [
        k
        for k in route_inventory(world.a.server.app)
        if k not in NOT_JWT and k.method not in ("WS", "MOUNT")
    ]


@dataclass(frozen=True)
class Credential:
    name: str
    token: str | None
    in_query: bool = False  # `?token=` (media links for <img> tags) instead of the header

    def label(self) -> str:
        return f"{self.name}{' in ?token=' if self.in_query else ''}"


async def _send(http: httpx.AsyncClient, probe: Probe, cred: Credential) -> httpx.Response:
    url, headers = probe.url, {}
    if cred.token is not None and cred.in_query:
        url += ("&" if "?" in url else "?") + str(httpx.QueryParams({"token": cred.token}))
    elif cred.token is not None:
        headers = {"Authorization": f"Bearer {cred.token}"}
    return await http.request(probe.method, url, json=probe.body, headers=headers)


def _bad_credentials_of(world: World) -> list[Credential]:
    """No token, and every bad token of A's, in the header and in the query string."""
    bad = [Credential(n, t, q) for n, t in world.bad.items() for q in (False, True)]
    return [Credential("no token", None), *bad]


def _tenant_b_credentials(world: World) -> list[Credential]:
    b = world.b
    return [
        Credential("tenant B admin", b.admin_token),
        Credential("tenant B agent", b.agent_token),
        Credential("tenant B admin", b.admin_token, in_query=True),
    ]


def _verdict(response: httpx.Response) -> str:
    """A refusal that was not one: an answer below 400 let the request through."""
    return "accepted" if response.status_code < 400 else "wrong answer"


async def _bad_credentials(world: World, http: httpx.AsyncClient, key: RouteKey, p: Probe) -> None:
    for cred in _bad_credentials_of(world):
        response = await _send(http, p, cred)
        world.findings.tried["rest"] += 1
        problem = refusal_problem(response, {401}, "UNAUTHORIZED")
        if problem is not None:
            world.findings.add(_verdict(response), f"{key} [{cred.label()}]", problem)
        world.leak_scan(f"{key} [{cred.label()}]", answer_text(response), p.text())


def _names_a(world: World, probe: Probe) -> bool:
    text = probe.text()
    return any(u in text for u in world.victim.uuids) or world.victim.ids["phone_number"] in text


def _twin(world: World, probe: Probe, twins: dict[str, str]) -> Probe:
    body = probe.body
    if body is not None:
        body = json.loads(world.victim.twin(json.dumps(body), twins))
    return Probe(probe.method, world.victim.twin(probe.url, twins), body)


async def _other_tenant(
    world: World,
    http: httpx.AsyncClient,
    key: RouteKey,
    p: Probe,
    cred: Credential,
    own_path: bool = False,
) -> None:
    """B's token: refused on A's rows exactly as on rows that exist nowhere; B's own scope may
    answer, but with nothing of A. On A's path it is a 403 (A's tenant) or 404 (A's row); on
    B's own path naming A's rows elsewhere, any refusal. (`?token=` only works for media.)"""
    where = f"{key} [{cred.label()}{' on its own path' if own_path else ''}]"
    response = await _send(http, p, cred)
    world.findings.tried["rest"] += 1
    world.leak_scan(where, answer_text(response), p.text())
    if not _names_a(world, p):
        _check_own_scope(world, where, p, response)
        return
    wanted = {403, 404} | ({400} if own_path else set()) | ({401} if cred.in_query else set())
    problem = refusal_problem(response, wanted, None)
    if problem is not None:
        world.findings.add(_verdict(response), where, problem)
        return
    await _compare_with_twin(world, http, where, p, response, cred)


def _check_own_scope(world: World, where: str, p: Probe, response: httpx.Response) -> None:
    """B in its own scope: answered or refused, but never an unexpected 5xx nor a refusal
    without an error_code."""
    # (Session names are unique per tenant only: B may call its own session as A calls one,
    # and is told nothing about A's by doing so; the leak scan above sees to the answer.)
    if response.status_code >= 500:
        problem = server_error(response)
    elif response.status_code >= 400:
        problem = refusal_problem(response, {response.status_code}, None)
    else:
        problem = None
    if problem is not None:
        world.findings.add(_verdict(response), where, problem)


async def _compare_with_twin(
    world: World,
    http: httpx.AsyncClient,
    where: str,
    probe: Probe,
    response: httpx.Response,
    cred: Credential,
) -> None:
    twins: dict[str, str] = {}
    other = await _send(http, _twin(world, probe, twins), cred)
    world.findings.tried["rest twins"] += 1
    ours = world.victim.twin(response.text, twins)
    if (response.status_code, ours) != (other.status_code, other.text):
        detail = f"{response.status_code} {ours} vs unknown ids: {other.status_code} {other.text}"
        world.findings.add("existence", where, detail)


async def _renew_b_tokens(world: World) -> None:
    """B's tokens after B logged itself out in the matrix (its own business)."""
    ctx, b = world.b.server.ctx, world.b
    async with ctx.reader() as session:
        for user_id, role, attr in (
            (b.admin_id, "admin", "admin_token"),
            (b.agent_id, "agent", "agent_token"),
        ):
            version = (
                await session.execute(select(User.token_version).where(User.id == user_id))
            ).scalar_one()
            token = mint_token(
                ctx.settings, user_id=user_id, tenant_id=b.id, role=role, version=version
            )
            setattr(b, attr, token)


async def _rest_matrix(world: World) -> int:
    values, query = _values(world), _query_values(world)
    routes = sorted(_jwt_routes(world), key=lambda k: k in SESSION_ENDING)
    async with httpx.AsyncClient(base_url=world.base, timeout=WAIT_SECS) as http:
        for key in routes:
            probe = build_request(world.spec, key, values, query)
            if probe.unknown_param is not None:
                world.findings.add("uncovered", str(key), f"no A value for {probe.unknown_param}")
                continue
            world.exercised.add(key)
            await _bad_credentials(world, http, key, probe)
            for cred in _tenant_b_credentials(world):
                await _other_tenant(world, http, key, probe, cred)
            if any(f"{{{name}}}" in key.path for name in world.b_rows):
                # B on its own rows' path, with A's rows (user, message, phone...) elsewhere.
                # (B writing to A's customer would be B's own business, so bodies use B's.)
                own_body = {**values, "phone_number": B_PHONE, "from": B_PHONE}
                path_rows = {**world.b_rows, "phone_number": world.victim.ids["phone_number"]}
                own = build_request(world.spec, key, own_body, query, path_rows)
                b_admin = _tenant_b_credentials(world)[0]
                await _other_tenant(world, http, key, own, b_admin, own_path=True)
    await _renew_b_tokens(world)
    return len(routes)


async def _controls(world: World) -> None:
    """A's own token reaches A's rows on every read route: the probes name real rows."""
    values, query = _values(world), _query_values(world)
    async with httpx.AsyncClient(base_url=world.base, timeout=WAIT_SECS) as http:
        for key in _jwt_routes(world):
            probe = build_request(world.spec, key, values, query)
            if key.method == "GET" and probe.unknown_param is None and _names_a(world, probe):
                response = await _send(http, probe, Credential("A admin", world.a.admin_token))
                assert response.status_code not in (401, 403, 404), (key, response.text)


# -- public routes and the credential exchanges ---------------------------------------------------
async def _public_routes(world: World) -> None:
    inventory = set(route_inventory(world.a.server.app))
    async with httpx.AsyncClient(base_url=world.base, timeout=WAIT_SECS) as http:
        for key in sorted(PUBLIC.keys() & inventory):
            response = await http.get(PUBLIC_PROBES.get(key, key.path))
            world.findings.tried["public"] += 1
            world.exercised.add(key)
            if response.status_code >= 400:
                world.findings.add("wrong answer", str(key), f"public route {response.status_code}")
            world.leak_scan(str(key), answer_text(response), key.path)


async def _credential_exchanges(world: World) -> None:
    email = world.a.admin_email
    async with httpx.AsyncClient(base_url=world.base, timeout=WAIT_SECS) as http:
        answers = []
        for who in (email, f"nobody-{_tag()}@t.test"):
            body = {"email": who, "password": "not-the-password"}
            answer = await http.post(LOGIN.path, json=body)
            _expect_401(world, f"{LOGIN} [{who}]", answer, json.dumps(body))
            answers.append(answer.text)
        if answers[0] != answers[1]:
            world.findings.add("existence", str(LOGIN), f"known vs unknown e-mail: {answers}")
        for name, token in world.bad.items():
            if name == "refresh as access":
                token = world.a.admin_token  # the other way round: an access token as refresh
            body = {"refresh_token": token}
            answer = await http.post(REFRESH.path, json=body)
            _expect_401(world, f"{REFRESH} [{name}]", answer, json.dumps(body))
    world.exercised |= {LOGIN, REFRESH}


def _expect_401(world: World, where: str, answer: httpx.Response, request: str) -> None:
    world.findings.tried["credential exchange"] += 1
    problem = refusal_problem(answer, {401}, "UNAUTHORIZED")
    if problem is not None:
        world.findings.add(_verdict(answer), where, problem)
    world.leak_scan(where, answer_text(answer), request)


# -- sockets ----------------------------------------------------------------------------------
@dataclass
class Refusal:
    code: int | None
    reason: str
    frames: list[str]


async def _refusal_of(url: str, first: str | None = None) -> Refusal:
    """Connect, maybe send one frame, and see whether the server closes the socket or
    answers (any frame before the close means the socket was let in)."""
    try:
        async with connect(url) as ws:
            if first is not None:
                await ws.send(first)
            return Refusal(None, "", [str(await asyncio.wait_for(ws.recv(), WAIT_SECS))])
    except ConnectionClosed as closed:
        rcvd = closed.rcvd
        return Refusal(rcvd.code if rcvd else None, rcvd.reason if rcvd else "", [])


def _expect_closed(world: World, where: str, refusal: Refusal, code: int) -> None:
    world.findings.tried["socket"] += 1
    if refusal.frames:
        world.findings.add("accepted", where, f"got frames before closing: {refusal.frames[:2]}")
    if refusal.code != code or not refusal.reason:
        world.findings.add("wrong answer", where, f"closed {refusal.code} {refusal.reason!r}")
    world.leak_scan(where, " ".join([refusal.reason, *refusal.frames]), "")


async def _dialect_a_refusals(world: World) -> None:
    base = f"{world.a.server.ws_base}{DIALECT_A.path}?tenant_id={world.a.id}"
    where = f"{DIALECT_A} (dialect A)"
    ping = json.dumps({"type": "ping"})
    _expect_closed(world, f"{where} [no token]", await _refusal_of(base, ping), 4401)
    for name, token in world.bad.items():
        refusal = await _refusal_of(f"{base}&token={token}")
        _expect_closed(world, f"{where} [{name}]", refusal, 4401)
        auth = json.dumps({"type": "auth", "token": token})
        refusal = await _refusal_of(base, auth)
        _expect_closed(world, f"{where} [{name} in the auth message]", refusal, 4401)
    refusal = await _refusal_of(f"{base}&token={world.b.admin_token}")
    _expect_closed(world, f"{where} [tenant B on A's tenant_id]", refusal, 4403)
    world.exercised.add(DIALECT_A)


async def _dialect_b_refusals(world: World) -> None:
    url = f"{world.a.server.ws_base}{DIALECT_B.path}"
    where = f"{DIALECT_B} (dialect B)"
    ping = json.dumps({"type": "ping"})
    _expect_closed(world, f"{where} [no token]", await _refusal_of(url, ping), 4401)
    for name, token in world.bad.items():
        first = json.dumps({"type": "auth", "token": token})
        _expect_closed(world, f"{where} [{name}]", await _refusal_of(url, first), 4401)
        refusal = await _refusal_of(f"{url}?token={token}")
        _expect_closed(world, f"{where} [{name} in ?token=]", refusal, 4401)
    claim_a = {"type": "auth", "token": world.b.admin_token, "user_id": str(world.a.admin_id)}
    refusal = await _refusal_of(url, json.dumps(claim_a))
    _expect_closed(world, f"{where} [tenant B claiming A's user]", refusal, 4403)
    world.exercised.add(DIALECT_B)


async def _dialect_c_refusals(world: World) -> None:
    where = f"{DIALECT_C} (dialect C)"
    for name, auth in (("no token", {}), *((n, {"token": t}) for n, t in world.bad.items())):
        client = SioClient()
        world.findings.tried["socket"] += 1
        try:
            await client.connect(world.base, auth, "websocket")
        except socketio.exceptions.ConnectionError:
            pass
        else:
            world.findings.add("accepted", f"{where} [{name}]", "connected")
        finally:
            await client.close()
        refused = client.refused
        if not isinstance(refused, dict) or not refused.get("message"):
            world.findings.add("wrong answer", f"{where} [{name}]", f"refused with {refused!r}")
        world.leak_scan(f"{where} [{name}]", str(refused) + str(client.seen), "")
    world.exercised.add(DIALECT_C)


def _scrub(frame: Any) -> Any:
    """A frame without what differs between two identical answers (time, event position)."""
    if isinstance(frame, dict):
        return {k: _scrub(v) for k, v in frame.items() if k not in ("timestamp", "event_id")}
    if isinstance(frame, list):
        return [_scrub(v) for v in frame]
    return frame


def _same_refusal(world: World, where: str, ours: Any, unknown: Any, twins: dict[str, str]) -> None:
    mine = json.loads(world.victim.twin(json.dumps(_scrub(ours)), twins))
    if mine != _scrub(unknown):
        world.findings.add("existence", where, f"{ours} vs unknown ids: {unknown}")


async def _errors_for(client: WsClient, frame: dict[str, Any]) -> Frames:
    """The `error` frames `frame` got: a socket handles its frames in order, so they all came
    before the pong of a ping sent after it."""
    mark = len(client.seen)
    await client.send(frame)
    await client.send({"type": "ping"})
    await client.expect("pong")
    return [f for f in client.seen[mark:] if f.get("type") == "error"]


async def _dialect_a_as_b(world: World) -> None:
    """B's own /ws/chat: replays only B's events; A's customer's phone is unknown to it."""
    where = f"{DIALECT_A} (dialect A) [tenant B]"
    phone = world.victim.ids["phone_number"]
    sent = [
        {"type": "typing", "phone_number": phone, "is_typing": True},
        {"type": "mark_as_read", "phone_number": phone},
    ]
    async with world.b.chat_socket(last_event_id=0) as client:
        await client.expect("new_message")  # B's own history came back: the replay works
        for frame in sent:
            errors = await _errors_for(client, frame)
            world.findings.tried["socket"] += 1
            if [e.get("error_code") for e in errors] != ["NOT_FOUND"]:
                world.findings.add("accepted", where, f"{frame['type']} answered {errors}")
        world.leak_scan(where, json.dumps(client.seen), json.dumps(sent))


@asynccontextmanager
async def _conversations_socket(
    url: str, token: str, user_id: uuid.UUID
) -> AsyncIterator[WsClient]:
    async with connect(url) as ws:
        client = WsClient(ws)
        await client.send({"type": "auth", "token": token, "user_id": str(user_id)})
        await client.expect("connected")
        yield client


async def _dialect_b_as_b(world: World) -> None:
    where = f"{DIALECT_B} (dialect B) [tenant B]"
    url = f"{world.b.server.ws_base}{DIALECT_B.path}?last_event_id=0"
    twins: dict[str, str] = {}
    conv = world.victim.ids["conversation_id"]
    async with _conversations_socket(url, world.b.admin_token, world.b.admin_id) as client:
        await client.expect("message_received")  # B's own history: the replay works
        answers = []
        for target in (conv, world.victim.twin(conv, twins)):
            answers.append(
                await _errors_for(client, {"type": "typing_start", "conversation_id": target})
            )
            world.findings.tried["socket"] += 1
        if [e.get("error_code") for e in answers[0]] != ["NOT_FOUND"]:
            world.findings.add("accepted", where, f"typing_start on A's answered {answers[0]}")
        _same_refusal(world, where, answers[0], answers[1], twins)
        world.leak_scan(where, json.dumps(client.seen), conv)


async def _sio_error(client: SioClient, event: str, data: dict[str, Any]) -> dict[str, Any] | None:
    """The `error` answering `event` (Socket.IO handles events concurrently: wait for it)."""
    mark = len(client.seen)
    await client.emit(event, data)
    try:
        return await client.expect("error", after=mark)
    except TimeoutError:
        return None


async def _dialect_c_as_b(world: World) -> None:
    where = f"{DIALECT_C} (dialect C) [tenant B]"
    twins: dict[str, str] = {}
    conv = world.victim.ids["conversation_id"]
    async with sio_client(world.base, world.b.admin_token, last_event_id=0) as client:
        await client.expect("message:new")  # B's own history: the replay works
        answers = []
        for target in (conv, world.victim.twin(conv, twins)):
            answers.append(
                await _sio_error(client, "join_conversation", {"conversation_id": target})
            )
            world.findings.tried["socket"] += 1
        if answers[0] is None or client.events("joined_conversation"):
            world.findings.add("accepted", where, "join_conversation on A's was not refused")
        _same_refusal(world, where, answers[0], answers[1], twins)
        await client.emit("typing_start", {"conversation_id": conv})
        await client.ping()
        world.leak_scan(where, str(client.seen), conv)


async def _live_events_of_b(world: World) -> None:
    """B's customer writes while B's and A's sockets are open: B hears it, A (the watchers)
    must not."""
    text = f"ao vivo do B {_tag()}"
    async with world.b.chat_socket() as client:
        assert (await world.b.customer_says(text, phone=B_PHONE)).status_code == 200
        await client.expect("new_message", lambda f: f["message"]["text"] == text)
    world.findings.tried["socket"] += 1


# -- A's own sockets, which must hear nothing while all this happens ----------------------------
@dataclass
class Watchers:
    a: WsClient
    b: WsClient
    c: SioClient


@asynccontextmanager
async def _watchers(world: World) -> AsyncIterator[Watchers]:
    a = world.a
    async with AsyncExitStack() as stack:
        dialect_a = await stack.enter_async_context(a.chat_socket())
        url = f"{a.server.ws_base}{DIALECT_B.path}"
        dialect_b = await stack.enter_async_context(
            _conversations_socket(url, a.admin_token, a.admin_id)
        )
        dialect_c = await stack.enter_async_context(sio_client(a.server.base_url, a.admin_token))
        yield Watchers(dialect_a, dialect_b, dialect_c)


async def _heard(watchers: Watchers) -> list[str]:
    """What A's sockets received besides their greeting, up to a ping's pong."""
    heard: list[str] = []
    for client in (watchers.a, watchers.b):
        await client.send({"type": "ping"})
        await client.expect("pong")
        heard += [str(f) for f in client.seen[1:-1]]  # between the greeting and the pong
    await watchers.c.ping()
    heard += [f"{n} {d}" for n, d in watchers.c.seen if n not in ("connected", "pong")]
    return heard


# -- webhooks ---------------------------------------------------------------------------------
GatewayFake = FakeEvolution | FakeWaha | FakeCloud | FakeConnectionService


def _fake(provider: ProviderName, session: str, secret: str | None) -> GatewayFake:
    if provider == ProviderName.EVOLUTION:
        return FakeEvolution(instance=session, webhook_key=secret)
    if provider == ProviderName.WAHA:
        return FakeWaha(session=session, hmac_key=secret)
    if provider == ProviderName.CLOUD:
        return FakeCloud(phone_number_id=session, app_secret=secret)
    return FakeConnectionService(session=session, webhook_key=secret)


def _delivery(
    provider: ProviderName, session: str, secret: str | None, text: str
) -> tuple[bytes, dict[str, str]]:
    """A customer's text for `session`, signed / keyed as the gateway would with `secret`."""
    headers = {"Content-Type": "application/json"}
    if provider == ProviderName.SANDBOX:
        body = {"session": session, "from": INTRUDER_PHONE, "text": text, "id": f"x-{_tag()}"}
        raw = json.dumps(body).encode()
        return raw, headers | ({"X-Webhook-Secret": secret} if secret else {})
    fake = _fake(provider, session, secret)
    raw = json.dumps(fake.inbound_text(INTRUDER_PHONE, text)).encode()
    return raw, headers | fake.webhook_headers(raw)


UNAUTHORIZED = (401, "UNAUTHORIZED")
# The sandbox has no shape of its own to be told apart by, so the generic URL can not take it.
NOT_A_GATEWAY_SHAPE = (400, "INVALID_PAYLOAD")


async def _post_webhook(
    world: World,
    http: httpx.AsyncClient,
    where: str,
    url: str,
    delivery: tuple[bytes, dict[str, str]],
    wanted: tuple[int, str] = UNAUTHORIZED,
) -> None:
    raw, headers = delivery
    answer = await http.post(url, content=raw, headers=headers)
    world.findings.tried["webhook"] += 1
    problem = refusal_problem(answer, {wanted[0]}, wanted[1])
    if problem is not None:
        world.findings.add(_verdict(answer), where, problem)
    world.leak_scan(where, answer_text(answer), raw.decode())


def _webhook_urls(gw: Gateway) -> dict[str, str]:
    own = f"/api/webhooks/{gw.provider.value}/{gw.a_token}"
    return {
        "explicit": f"/api/webhooks/{gw.provider.value}",
        "per event": f"/api/webhooks/{gw.provider.value}/messages-upsert",
        "generic": "/api/webhooks/whatsapp",
        "own URL": own,
        "own URL per event": f"{own}/messages-upsert",
    }


async def _webhook_matrix(world: World) -> None:
    async with httpx.AsyncClient(base_url=world.base, timeout=WAIT_SECS) as http:
        for gw in world.gateways:
            secrets = {"no credentials": None, "wrong secret": "not-the-secret"}
            secrets["tenant B's secret"] = gw.b_secret
            for url_name, url in _webhook_urls(gw).items():
                generic_sandbox = url_name == "generic" and gw.provider == ProviderName.SANDBOX
                wanted = NOT_A_GATEWAY_SHAPE if generic_sandbox else UNAUTHORIZED
                for secret_name, secret in secrets.items():
                    delivery = _delivery(gw.provider, gw.a_name, secret, world.intruder_text)
                    where = f"webhook {gw.provider.value} {url_name} [{secret_name}]"
                    await _post_webhook(world, http, where, url, delivery, wanted)
            await _unknown_like_known(world, http, gw)
            await _a_name_on_b_own_url(world, http, gw)
        await _mixed_cloud_delivery(world, http)
        await _evolution_v1_body_key(world, http)
        await _cloud_handshake(world, http)
    world.exercised |= WEBHOOK_ROUTES


async def _unknown_like_known(world: World, http: httpx.AsyncClient, gw: Gateway) -> None:
    """A's name (or token) with B's secret answers byte for byte what a name (or token) that
    exists nowhere answers: webhooks can not be used to learn which sessions exist."""
    nobody = f"{gw.a_name[:-4]}{uuid.uuid4().int % 10**4:04d}"
    urls = _webhook_urls(gw)
    pairs = [
        (urls["explicit"], gw.a_name, urls["explicit"], nobody),
        (urls["own URL"], gw.a_name, f"/api/webhooks/{gw.provider.value}/wh_{_tag()}", gw.a_name),
    ]
    for known_url, known_name, unknown_url, unknown_name in pairs:
        answers = []
        for url, name in ((known_url, known_name), (unknown_url, unknown_name)):
            raw, headers = _delivery(gw.provider, name, gw.b_secret, world.intruder_text)
            answers.append(await http.post(url, content=raw, headers=headers))
            world.findings.tried["webhook"] += 1
        known, unknown = answers
        if (known.status_code, known.content) != (unknown.status_code, unknown.content):
            detail = f"{known.status_code} {known.text} vs {unknown.status_code} {unknown.text}"
            world.findings.add("existence", f"webhook {gw.provider.value} {known_url}", detail)


async def _a_name_on_b_own_url(world: World, http: httpx.AsyncClient, gw: Gateway) -> None:
    """B's own URL and B's own secret, with a body about A's session: nothing reaches A (the
    intruder-message count at the end would show it), and the answer says nothing of A."""
    raw, headers = _delivery(gw.provider, gw.a_name, gw.b_secret, world.intruder_text)
    answer = await http.post(
        f"/api/webhooks/{gw.provider.value}/{gw.b_token}", content=raw, headers=headers
    )
    where = f"webhook {gw.provider.value} B's own URL [A's session in the body]"
    world.findings.tried["webhook"] += 1
    if answer.status_code != 200 or answer.json().get("stored") != 0:
        world.findings.add(_verdict(answer), where, f"{answer.status_code} {answer.text[:200]}")
    world.leak_scan(where, answer_text(answer), raw.decode())


async def _mixed_cloud_delivery(world: World, http: httpx.AsyncClient) -> None:
    """One Cloud API body with B's number and A's, signed with B's app secret."""
    gw = next(g for g in world.gateways if g.provider == ProviderName.CLOUD)
    signer = FakeCloud(phone_number_id=gw.b_name, app_secret=gw.b_secret)
    body = signer.inbound_text(INTRUDER_PHONE, world.intruder_text)
    body["entry"] += FakeCloud(phone_number_id=gw.a_name).inbound_text(
        INTRUDER_PHONE, world.intruder_text
    )["entry"]
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **signer.webhook_headers(raw)}
    where = "webhook cloud [B's number + A's number, B's signature]"
    await _post_webhook(world, http, where, "/api/webhooks/cloud", (raw, headers))


async def _evolution_v1_body_key(world: World, http: httpx.AsyncClient) -> None:
    """Evolution v1 may carry its key in the body: B's key for A's instance."""
    gw = next(g for g in world.gateways if g.provider == ProviderName.EVOLUTION)
    body = FakeEvolution(instance=gw.a_name).inbound_text(
        INTRUDER_PHONE, world.intruder_text, version="v1"
    )
    body["apikey"] = gw.b_secret
    raw = json.dumps(body).encode()
    where = "webhook evolution v1 [B's key in the body]"
    headers = {"Content-Type": "application/json"}
    await _post_webhook(world, http, where, "/api/webhooks/evolution", (raw, headers))


async def _cloud_handshake(world: World, http: httpx.AsyncClient) -> None:
    gw = next(g for g in world.gateways if g.provider == ProviderName.CLOUD)
    b_row = await sessions_svc.find_by_token(world.b.server.ctx, "cloud", gw.b_token)
    assert b_row is not None
    tokens = [("no token", None), ("wrong token", "not-a-verify-token")]
    own_url = [*tokens, ("tenant B's verify token", str(b_row.options["verify_token"]))]
    unknown = f"/api/webhooks/cloud/wh_{_tag()}"
    for url, cases in (
        ("/api/webhooks/cloud", tokens),
        (f"/api/webhooks/cloud/{gw.a_token}", own_url),
        (unknown, own_url),
    ):
        for name, token in cases:
            params = {"hub.mode": "subscribe", "hub.challenge": "c-123"}
            if token is not None:
                params["hub.verify_token"] = token
            answer = await http.get(url, params=params)
            world.findings.tried["webhook"] += 1
            problem = refusal_problem(answer, {401}, "UNAUTHORIZED")
            if problem is not None:
                world.findings.add(_verdict(answer), f"webhook cloud GET {url} [{name}]", problem)
            world.leak_scan(f"webhook cloud GET [{name}]", answer_text(answer), url)


async def _intruder_messages(world: World) -> int:
    """Messages anywhere (A, B, or any tenant) that came from a refused delivery."""
    async with world.a.server.ctx.sessionmaker() as session:
        stmt = select(func.count(Message.id)).where(Message.text.contains(world.intruder_text))
        return int((await session.execute(stmt)).scalar_one())


# -- the test ---------------------------------------------------------------------------------
def _coverage(world: World) -> None:
    for key in route_inventory(world.a.server.app):
        if key not in world.exercised:
            world.findings.add("uncovered", str(key), "not exercised and not listed as public")


async def _probe_everything(world: World) -> int:
    routes = await _rest_matrix(world)
    await _public_routes(world)
    await _credential_exchanges(world)
    for refusals in (_dialect_a_refusals, _dialect_b_refusals, _dialect_c_refusals):
        await refusals(world)
    for own_socket in (_dialect_a_as_b, _dialect_b_as_b, _dialect_c_as_b, _live_events_of_b):
        await own_socket(world)
    await _webhook_matrix(world)
    return routes


async def run_matrix(a: Tenant, b: Tenant) -> tuple[World, int]:
    """Everything above against tenant A, with B as the other tenant: (world, routes)."""
    world = await _world(a, b)
    await _controls(world)
    async with _watchers(world) as watchers:
        before = await snapshot(world.a.server.ctx, world.a.id)
        routes = await _probe_everything(world)
        for frame in await _heard(watchers):
            world.findings.add("changed", "A's sockets", f"heard {frame}")
    for change in snapshot_diff(before, await snapshot(world.a.server.ctx, world.a.id)):
        world.findings.add("changed", "A's rows", change)
    if stored := await _intruder_messages(world):
        world.findings.add("accepted", "webhooks", f"{stored} refused deliveries were stored")
    _coverage(world)
    return world, routes


async def test_tenant_isolation_matrix(tenant: Tenant, other_tenant: Tenant) -> None:
    world, routes = await run_matrix(tenant, other_tenant)
    tried = world.findings.tried
    report(
        "isolation matrix",
        tried=(
            f"{routes} routes x {len(_bad_credentials_of(world)) + 3} credentials "
            f"({tried['rest']} requests, "
            f"{tried['rest twins']} unknown-id twins) + {tried['public']} public routes "
            f"+ {tried['credential exchange']} logins/refreshes + 3 dialects "
            f"({tried['socket']} attempts) + {len(world.gateways)} webhook providers "
            f"({tried['webhook']} forged deliveries)"
        ),
        lost=world.findings.lost(),
    )
    assert not world.findings.items, world.findings.describe()
