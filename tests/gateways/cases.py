"""One adapter per gateway, so every end-to-end test runs unchanged against each of them.

A `Case` is a running fake gateway (real loopback HTTP) plus a tenant of a running Atende whose
only WhatsApp session points at that fake and is connected. The adapter knows the gateway's
payload builders, its documented send request, and how to break its webhook credentials.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, ClassVar, Literal

import httpx
from sqlalchemy import select

from atende.db.models import Contact, Message, User
from atende.services import accounts
from atende.services import sessions as sessions_svc
from atende.services.auth import mint_token
from atende.types import ProviderName, Role, SessionState
from tests.fakes.cloud import FakeCloud
from tests.fakes.connection_service import QR_DATA_URL as CS_QR_DATA_URL
from tests.fakes.connection_service import FakeConnectionService
from tests.fakes.evolution import QR_DATA_URL as EVO_QR_DATA_URL
from tests.fakes.evolution import FakeEvolution
from tests.fakes.server import QR_PNG_BASE64, FakeGateway, RecordedRequest, loopback_client
from tests.fakes.waha import FakeWaha
from tests.harness import Server, Tenant

PHONE = "5511987654321"
Ack = Literal["delivered", "read"]
ConnState = Literal["connected", "disconnected", "qr"]
KINDS = ("evolution-v2", "evolution-v1", "waha", "cloud", "connection_service")
NO_LOGIN_HASH = "!test-user-without-password"  # these users only ever use minted tokens


def _hex() -> str:
    return uuid.uuid4().hex[:10]


class Case:
    kind: ClassVar[str]
    provider: ClassVar[ProviderName]
    auth_header: ClassVar[str]  # lower-cased, as the fake records it
    has_number_check: ClassVar[bool] = True
    has_connection_events: ClassVar[bool] = True

    def __init__(self, server: Server, fake: FakeGateway, secret: str) -> None:
        self.server = server
        self.fake = fake
        self.secret = secret
        self.tenant: Tenant  # set by open_case

    @staticmethod
    def new_fake() -> FakeGateway:
        raise NotImplementedError

    @staticmethod
    def assign(fake: Any, secret: str) -> None:
        """Give a (possibly shared, running) fake a fresh session of this test, paired."""
        raise NotImplementedError

    # -- identity of the session ----------------------------------------------------------------
    @property
    def session_name(self) -> str:
        raise NotImplementedError

    def session_options(self) -> dict[str, Any]:
        return {}

    @property
    def webhook_url(self) -> str:
        return f"{self.server.base_url}/api/webhooks/{self.provider.value}"

    @property
    def generic_url(self) -> str:
        return f"{self.server.base_url}/api/webhooks/whatsapp"

    def auth_value(self) -> str:
        return self.fake.api_key

    def http(self) -> httpx.AsyncClient:
        """A client of the Atende under test (cheaper to make than `Tenant.http()`)."""
        return loopback_client(base_url=self.server.base_url, timeout=10.0)

    # -- payloads --------------------------------------------------------------------------------
    def inbound_text(
        self, text: str, *, phone: str = PHONE, msg_id: str | None = None
    ) -> dict[str, Any]:
        raise NotImplementedError

    def inbound_image(self, data: bytes, caption: str, *, phone: str = PHONE) -> dict[str, Any]:
        """A customer's image whose bytes the fake serves (registered on the fake here)."""
        raise NotImplementedError

    def ack(self, wamid: str, status: Ack) -> dict[str, Any]:
        raise NotImplementedError

    def unknown_session(self, text: str) -> dict[str, Any]:
        raise NotImplementedError

    def malformed(self) -> list[Any]:
        """Bodies of this gateway's shape that lack required fields."""
        raise NotImplementedError

    def connection(self, state: ConnState) -> dict[str, Any]:
        raise NotImplementedError

    def break_webhook_auth(self) -> None:
        """Make the fake sign / authenticate its deliveries with the wrong secret."""
        raise NotImplementedError

    def prepare_connect(self) -> str | None:
        """Make the fake's session not paired yet; the QR data URL `connect` should return."""
        raise NotImplementedError

    # -- requests the fake received ------------------------------------------------------------
    def sends(self) -> list[RecordedRequest]:
        raise NotImplementedError

    def checks(self) -> list[RecordedRequest]:
        return []

    def expected_text(self, text: str, *, to: str = PHONE) -> tuple[str, dict[str, Any]]:
        """(path, body) of the documented text send to a contact whose address is known."""
        raise NotImplementedError

    def expected_image(
        self, url: str, caption: str, filename: str, *, to: str = PHONE
    ) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError

    def sent_id(self, answer: Any) -> str:
        """The gateway message id in the fake's answer to a send (what its acks refer to)."""
        raise NotImplementedError

    # -- helpers ---------------------------------------------------------------------------------
    async def deliver(
        self, payload: Any, *, url: str | None = None, attempts: int | None = None
    ) -> httpx.Response:
        target = url or self.webhook_url
        if attempts is None:
            return await self.fake.deliver(target, payload)
        return await self.fake.deliver(target, payload, attempts=attempts)

    async def post_raw(self, body: bytes, *, url: str | None = None) -> httpx.Response:
        """A body exactly as given (possibly not JSON), with the gateway's own headers."""
        headers = {"Content-Type": "application/json", **self.fake.webhook_headers(body)}
        async with loopback_client() as client:
            return await client.post(url or self.webhook_url, content=body, headers=headers)

    async def stored(self) -> list[Message]:
        async with self.server.ctx.sessionmaker() as session:
            stmt = (
                select(Message)
                .where(Message.tenant_id == self.tenant.id)
                .order_by(Message.created_at, Message.id)
            )
            return list((await session.execute(stmt)).scalars())

    async def message(self, message_id: str) -> Message:
        async with self.server.ctx.sessionmaker() as session:
            msg = await session.get(Message, uuid.UUID(message_id))
        assert msg is not None
        return msg

    async def contact(self, phone: str = PHONE) -> Contact:
        async with self.server.ctx.sessionmaker() as session:
            stmt = select(Contact).where(
                Contact.tenant_id == self.tenant.id, Contact.phone == phone
            )
            contact = (await session.execute(stmt)).scalar_one_or_none()
        assert contact is not None
        return contact


# -- Evolution API ------------------------------------------------------------------------------
class EvolutionCase(Case):
    provider = ProviderName.EVOLUTION
    auth_header = "apikey"
    version: ClassVar[Literal["v1", "v2"]]
    fake: FakeEvolution

    @staticmethod
    def new_fake() -> FakeEvolution:
        return FakeEvolution()

    @staticmethod
    def assign(fake: FakeEvolution, secret: str) -> None:
        fake.instance, fake.webhook_key = f"loja-{_hex()}", secret
        fake.instances[fake.instance] = "open"

    @property
    def session_name(self) -> str:
        return self.fake.instance

    def session_options(self) -> dict[str, Any]:
        return {"evolution_version": self.version}

    def event_url(self, slug: str) -> str:
        return f"{self.webhook_url}/{slug}"

    def inbound_text(
        self, text: str, *, phone: str = PHONE, msg_id: str | None = None
    ) -> dict[str, Any]:
        return self.fake.inbound_text(phone, text, msg_id=msg_id, version=self.version)

    def inbound_image(self, data: bytes, caption: str, *, phone: str = PHONE) -> dict[str, Any]:
        msg_id = f"3EB0IMG{_hex().upper()}"
        self.fake.add_media(msg_id, data, "image/jpeg")
        return self.fake.inbound_media(
            phone, "image", msg_id=msg_id, caption=caption, version=self.version
        )

    def ack(self, wamid: str, status: Ack) -> dict[str, Any]:
        value = {"delivered": "DELIVERY_ACK", "read": "READ"}[status]
        return self.fake.ack(wamid, value, version=self.version)

    def unknown_session(self, text: str) -> dict[str, Any]:
        return self.fake.inbound_text(PHONE, text, version=self.version, instance=f"nope-{_hex()}")

    def malformed(self) -> list[Any]:
        good = self.inbound_text("x")
        no_key = json.loads(json.dumps(good))
        del no_key["data"]["key"]
        no_id = json.loads(json.dumps(good))
        del no_id["data"]["key"]["id"]
        no_data = {k: v for k, v in good.items() if k != "data"}
        bad_update = self.fake.ack("x", "READ", version=self.version)
        bad_update["data"] = {"fromMe": True, "status": "READ"}  # neither keyId nor id
        return [no_key, no_id, no_data, bad_update]

    def connection(self, state: ConnState) -> dict[str, Any]:
        if state == "qr":
            return self.fake.qr()
        return self.fake.connection("open" if state == "connected" else "close")

    def break_webhook_auth(self) -> None:
        self.fake.webhook_key = "not-the-secret"

    def prepare_connect(self) -> str | None:
        self.fake.instances.pop(self.fake.instance, None)
        return EVO_QR_DATA_URL

    def sends(self) -> list[RecordedRequest]:
        return [r for r in self.fake.requests if r.path.startswith("/message/")]

    def checks(self) -> list[RecordedRequest]:
        return self.fake.find("POST", f"/chat/whatsappNumbers/{self.fake.instance}")

    def expected_text(self, text: str, *, to: str = PHONE) -> tuple[str, dict[str, Any]]:
        path = f"/message/sendText/{self.fake.instance}"
        if self.version == "v1":
            return path, {"number": to, "textMessage": {"text": text}}
        return path, {"number": to, "text": text}

    def expected_image(
        self, url: str, caption: str, filename: str, *, to: str = PHONE
    ) -> tuple[str, dict[str, Any]]:
        path = f"/message/sendMedia/{self.fake.instance}"
        fields = {"mediatype": "image", "media": url, "caption": caption, "fileName": filename}
        if self.version == "v1":
            return path, {"number": to, "mediaMessage": fields}
        return path, {"number": to, "mimetype": "image/jpeg", **fields}

    def sent_id(self, answer: Any) -> str:
        return str(answer["key"]["id"])


class EvolutionV2Case(EvolutionCase):
    kind = "evolution-v2"
    version = "v2"


class EvolutionV1Case(EvolutionCase):
    kind = "evolution-v1"
    version = "v1"


# -- WAHA -----------------------------------------------------------------------------------------
class WahaCase(Case):
    kind = "waha"
    provider = ProviderName.WAHA
    auth_header = "x-api-key"
    fake: FakeWaha

    @staticmethod
    def new_fake() -> FakeWaha:
        return FakeWaha()

    @staticmethod
    def assign(fake: FakeWaha, secret: str) -> None:
        fake.session, fake.hmac_key = f"s-{_hex()}", secret
        fake.sessions[fake.session] = "WORKING"

    @property
    def session_name(self) -> str:
        return self.fake.session

    def inbound_text(
        self, text: str, *, phone: str = PHONE, msg_id: str | None = None
    ) -> dict[str, Any]:
        return self.fake.inbound_text(phone, text, msg_id=msg_id)

    def inbound_image(self, data: bytes, caption: str, *, phone: str = PHONE) -> dict[str, Any]:
        name = f"false_{phone}@c.us_{_hex()}.jpg"
        self.fake.add_file(name, data, "image/jpeg")
        # WAHA builds file URLs from its own hostname setting, often localhost: Atende must
        # fetch them from the configured base URL instead.
        url = f"http://localhost:3000/api/files/{name}"
        return self.fake.inbound_media(phone, url=url, caption=caption)

    def ack(self, wamid: str, status: Ack) -> dict[str, Any]:
        return self.fake.ack(wamid, {"delivered": 2, "read": 3}[status])

    def unknown_session(self, text: str) -> dict[str, Any]:
        return self.fake.inbound_text(PHONE, text, session=f"nope-{_hex()}")

    def malformed(self) -> list[Any]:
        good = self.inbound_text("x")
        no_id = json.loads(json.dumps(good))
        del no_id["payload"]["id"]
        no_from = json.loads(json.dumps(good))
        del no_from["payload"]["from"]
        not_object = {**good, "payload": "oops"}
        bad_ack = self.fake.ack("x", 3)
        del bad_ack["payload"]["id"]
        return [no_id, no_from, not_object, bad_ack]

    def connection(self, state: ConnState) -> dict[str, Any]:
        if state == "qr":
            return self.fake.qr()
        if state == "connected":
            return self.fake.connection("WORKING")
        return self.fake.connection("STOPPED", shape="source")  # the 2024 payload shape

    def break_webhook_auth(self) -> None:
        self.fake.hmac_key = "not-the-secret"

    def prepare_connect(self) -> str | None:
        self.fake.sessions.pop(self.fake.session, None)
        return f"data:image/png;base64,{QR_PNG_BASE64}"

    def sends(self) -> list[RecordedRequest]:
        return [r for r in self.fake.requests if r.path.startswith("/api/send")]

    def checks(self) -> list[RecordedRequest]:
        return self.fake.find("GET", "/api/contacts/check-exists")

    def expected_text(self, text: str, *, to: str = PHONE) -> tuple[str, dict[str, Any]]:
        return "/api/sendText", {"session": self.fake.session, "chatId": f"{to}@c.us", "text": text}

    def expected_image(
        self, url: str, caption: str, filename: str, *, to: str = PHONE
    ) -> tuple[str, dict[str, Any]]:
        return "/api/sendImage", {
            "session": self.fake.session,
            "chatId": f"{to}@c.us",
            "file": {"mimetype": "image/jpeg", "url": url, "filename": filename},
            "caption": caption,
        }

    def sent_id(self, answer: Any) -> str:
        return str(answer["id"]["_serialized"])  # WEBJS; acks carry the serialized form


# -- Meta Cloud API -------------------------------------------------------------------------------
class CloudCase(Case):
    kind = "cloud"
    provider = ProviderName.CLOUD
    auth_header = "authorization"
    has_number_check = False
    has_connection_events = False
    fake: FakeCloud
    verify_token: str = ""

    @staticmethod
    def new_fake() -> FakeCloud:
        return FakeCloud()

    @staticmethod
    def assign(fake: FakeCloud, secret: str) -> None:
        fake.phone_number_id, fake.app_secret = str(uuid.uuid4().int)[:15], secret
        fake.wa_ids.clear()

    @property
    def session_name(self) -> str:
        return self.fake.phone_number_id

    def session_options(self) -> dict[str, Any]:
        self.verify_token = f"vt-{_hex()}"
        return {"verify_token": self.verify_token, "api_version": self.fake.version}

    def auth_value(self) -> str:
        return f"Bearer {self.fake.api_key}"

    def inbound_text(
        self, text: str, *, phone: str = PHONE, msg_id: str | None = None
    ) -> dict[str, Any]:
        return self.fake.inbound_text(phone, text, msg_id=msg_id)

    def inbound_image(self, data: bytes, caption: str, *, phone: str = PHONE) -> dict[str, Any]:
        media_id = str(uuid.uuid4().int)[:16]
        self.fake.add_media(media_id, data, "image/jpeg")
        return self.fake.inbound_media(phone, "image", media_id, caption=caption)

    def ack(self, wamid: str, status: Ack) -> dict[str, Any]:
        return self.fake.ack(wamid, status, recipient=PHONE)

    def unknown_session(self, text: str) -> dict[str, Any]:
        payload = self.fake.inbound_text(PHONE, text)
        payload["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = "1" * 15
        return payload

    def malformed(self) -> list[Any]:
        good = self.inbound_text("x")
        no_from = json.loads(json.dumps(good))
        del no_from["entry"][0]["changes"][0]["value"]["messages"][0]["from"]
        no_body = json.loads(json.dumps(good))
        del no_body["entry"][0]["changes"][0]["value"]["messages"][0]["text"]
        entry_not_list = {"object": "whatsapp_business_account", "entry": {"id": "1"}}
        no_metadata = json.loads(json.dumps(good))
        del no_metadata["entry"][0]["changes"][0]["value"]["metadata"]
        return [no_from, no_body, entry_not_list, no_metadata]

    def connection(self, state: ConnState) -> dict[str, Any]:
        return self.fake.connection(state)  # account_update: not about a phone number

    def break_webhook_auth(self) -> None:
        self.fake.app_secret = "not-the-app-secret"

    def prepare_connect(self) -> str | None:
        return None  # a Cloud API number has no QR: connect just checks the token

    def sends(self) -> list[RecordedRequest]:
        return [
            r for r in self.fake.requests if r.method == "POST" and r.path.endswith("/messages")
        ]

    def expected_text(self, text: str, *, to: str = PHONE) -> tuple[str, dict[str, Any]]:
        return f"/{self.fake.version}/{self.fake.phone_number_id}/messages", {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "text",
            "text": {"preview_url": False, "body": text},
        }

    def expected_image(
        self, url: str, caption: str, filename: str, *, to: str = PHONE
    ) -> tuple[str, dict[str, Any]]:
        return f"/{self.fake.version}/{self.fake.phone_number_id}/messages", {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "image",
            "image": {"link": url, "caption": caption},
        }

    def sent_id(self, answer: Any) -> str:
        return str(answer["messages"][0]["id"])


# -- the seed-003 connection service --------------------------------------------------------------
class ConnectionServiceCase(Case):
    kind = "connection_service"
    provider = ProviderName.CONNECTION_SERVICE
    auth_header = "x-api-key"
    fake: FakeConnectionService

    @staticmethod
    def new_fake() -> FakeConnectionService:
        return FakeConnectionService()

    @staticmethod
    def assign(fake: FakeConnectionService, secret: str) -> None:
        fake.session, fake.webhook_key = f"t-{_hex()}", secret
        fake.sessions[fake.session] = "connected"

    @property
    def session_name(self) -> str:
        return self.fake.session

    def inbound_text(
        self, text: str, *, phone: str = PHONE, msg_id: str | None = None
    ) -> dict[str, Any]:
        return self.fake.inbound_text(phone, text, msg_id=msg_id)

    def inbound_image(self, data: bytes, caption: str, *, phone: str = PHONE) -> dict[str, Any]:
        url = self.fake.add_file(f"{_hex()}.jpg", data, "image/jpeg")
        return self.fake.inbound_media(phone, "image", url, caption=caption, filename="foto.jpg")

    def ack(self, wamid: str, status: Ack) -> dict[str, Any]:
        return self.fake.ack(wamid, status)

    def unknown_session(self, text: str) -> dict[str, Any]:
        return self.fake.inbound_text(PHONE, text, session=f"nope-{_hex()}")

    def malformed(self) -> list[Any]:
        good = self.inbound_text("x")
        no_id = json.loads(json.dumps(good))
        del no_id["message"]["id"]
        no_text = json.loads(json.dumps(good))
        del no_text["message"]["text"]
        bad_type = json.loads(json.dumps(good))
        bad_type["message"]["type"] = "hologram"
        bad_status = self.fake.connection("sleeping")
        return [no_id, no_text, bad_type, bad_status]

    def connection(self, state: ConnState) -> dict[str, Any]:
        return self.fake.qr() if state == "qr" else self.fake.connection(state)

    def break_webhook_auth(self) -> None:
        self.fake.webhook_key = "not-the-secret"

    def prepare_connect(self) -> str | None:
        self.fake.sessions.pop(self.fake.session, None)
        return CS_QR_DATA_URL

    def sends(self) -> list[RecordedRequest]:
        return self.fake.find("POST", "/message/send")

    def checks(self) -> list[RecordedRequest]:
        return [r for r in self.fake.requests if "/contacts/" in r.path]

    def expected_text(self, text: str, *, to: str = PHONE) -> tuple[str, dict[str, Any]]:
        return "/message/send", {
            "session": self.fake.session,
            "to": f"{to}@s.whatsapp.net",
            "type": "text",
            "text": text,
        }

    def expected_image(
        self, url: str, caption: str, filename: str, *, to: str = PHONE
    ) -> tuple[str, dict[str, Any]]:
        return "/message/send", {
            "session": self.fake.session,
            "to": f"{to}@s.whatsapp.net",
            "type": "image",
            "media": {
                "url": url,
                "mimetype": "image/jpeg",
                "filename": filename,
                "caption": caption,
            },
        }

    def sent_id(self, answer: Any) -> str:
        return str(answer["id"])


CASES: dict[str, type[Case]] = {
    c.kind: c
    for c in (EvolutionV2Case, EvolutionV1Case, WahaCase, CloudCase, ConnectionServiceCase)
}


async def gateway_tenant(server: Server, case: Case, *, base_url: str | None = None) -> Tenant:
    """A tenant whose only WhatsApp session is `case`'s gateway session, connected."""
    ctx = server.ctx
    suffix = _hex()
    tenant = await accounts.create_tenant(ctx, name=f"Loja {suffix}")
    admin_id, agent_id = uuid.uuid4(), uuid.uuid4()
    async with ctx.sessionmaker() as session, session.begin():
        for user_id, role in ((admin_id, Role.ADMIN), (agent_id, Role.AGENT)):
            session.add(
                User(
                    id=user_id,
                    tenant_id=tenant.id,
                    email=f"{role.value}-{suffix}@gw.test",
                    name=f"{role.value} {suffix}",
                    password_hash=NO_LOGIN_HASH,
                    role=role.value,
                )
            )
    row = await sessions_svc.create_session(
        ctx,
        tenant_id=tenant.id,
        provider=case.provider,
        name=case.session_name,
        base_url=base_url or case.fake.base_url,
        api_key=case.fake.api_key,
        webhook_secret=case.secret,
        options=case.session_options(),
    )
    await sessions_svc.set_state(ctx, row.id, state=SessionState.CONNECTED)

    def token(user_id: uuid.UUID, role: Role) -> str:
        return mint_token(ctx.settings, user_id=user_id, tenant_id=tenant.id, role=role.value)

    return Tenant(
        server=server,
        id=tenant.id,
        admin_id=admin_id,
        agent_id=agent_id,
        admin_token=token(admin_id, Role.ADMIN),
        agent_token=token(agent_id, Role.AGENT),
        session_name=row.name,
        session_id=row.id,
        webhook_secret=case.secret,
        admin_email=f"admin-{suffix}@gw.test",
    )


@asynccontextmanager
async def open_case(
    kind: str,
    server: Server,
    *,
    fake: FakeGateway | None = None,
    base_url: str | None = None,
) -> AsyncIterator[Case]:
    """A tenant connected to a fake gateway of `kind`: `fake` when given (already running and
    shared between tests, which saves starting a server each time), else a new one."""
    cls = CASES[kind]
    async with AsyncExitStack() as stack:
        if fake is None:
            fake = cls.new_fake()
            await stack.enter_async_context(fake.running())
        reset(fake)
        secret = f"whsec-{_hex()}"
        cls.assign(fake, secret)
        case = cls(server, fake, secret)
        case.tenant = await gateway_tenant(server, case, base_url=base_url)
        yield case


def reset(fake: FakeGateway) -> None:
    """Forget what an earlier test recorded or programmed."""
    fake.requests.clear()
    fake.unknown_numbers = set()
    fake.on_answer = None
    fake._failures.clear()
    fake._hangs = 0


def reattach(case: Case, server: Server) -> Case:
    """The same gateway and tenant, seen through another running Atende (after a restart)."""
    again = type(case)(server, case.fake, case.secret)
    again.tenant = Tenant(**{**case.tenant.__dict__, "server": server})
    if isinstance(case, CloudCase) and isinstance(again, CloudCase):
        again.verify_token = case.verify_token
    return again
