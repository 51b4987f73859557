"""Webhook answers for each gateway: 401 bad credentials or unknown session (one answer, so
that names can not be probed), 400 malformed, 404 unknown provider,
200-and-ignore for events we do not handle, forward-only statuses, Meta's handshake, and
inbound media served to agents through Atende."""

from __future__ import annotations

import pytest

from tests.gateways.cases import PHONE, Case, CloudCase
from tests.harness import WsClient


async def _sent_reply(case: Case, agent: WsClient, text: str) -> tuple[str, str]:
    await agent.send({"type": "send_message", "phone_number": PHONE, "text": text})
    message_id = str((await agent.expect("message_sent"))["message_id"])
    await agent.expect(
        "message_status", lambda f: f["message_id"] == message_id and f["status"] == "sent"
    )
    wamid = (await case.message(message_id)).whatsapp_message_id
    assert wamid
    return message_id, wamid


async def test_wrong_key_or_signature_is_401_and_stores_nothing(case: Case) -> None:
    case.break_webhook_auth()
    for url in (case.webhook_url, case.generic_url):
        answer = await case.deliver(case.inbound_text("sou um impostor"), url=url)
        assert answer.status_code == 401, answer.text
        assert answer.json()["error_code"] == "UNAUTHORIZED"
    unsigned = await case.post_raw(b"{}")  # not even the gateway's shape: still not stored
    assert unsigned.status_code in (400, 401)
    assert await case.stored() == []


async def test_missing_credentials_are_401(case: Case) -> None:
    body = case.inbound_text("sem credenciais")
    async with case.http() as http:
        answer = await http.post(case.webhook_url, json=body)  # no gateway headers at all
    if case.kind == "evolution-v1":
        # v1 can not send headers: its secret may come as the body's `apikey` (instance token).
        assert answer.status_code == 401
        body["apikey"] = case.secret
        async with case.http() as http:
            accepted = await http.post(case.webhook_url, json=body)
        assert accepted.status_code == 200, accepted.text
        assert len(await case.stored()) == 1
        return
    assert answer.status_code == 401, answer.text
    assert await case.stored() == []


async def test_malformed_bodies_are_400_and_store_nothing(case: Case) -> None:
    for body in case.malformed():
        for url in (case.webhook_url, case.generic_url):
            answer = await case.deliver(body, url=url)
            assert answer.status_code == 400, (body, answer.text)
            assert answer.json()["error_code"] == "INVALID_PAYLOAD"
            assert answer.json()["message"]  # says why
    not_json = await case.post_raw(b'{"event": "messages.upsert", ')
    assert not_json.status_code == 400 and not_json.json()["error_code"] == "INVALID_PAYLOAD"
    async with case.http() as http:
        unknown_shape = await http.post(case.generic_url, json={"hello": "world"})
    assert unknown_shape.status_code == 400
    assert await case.stored() == []


async def test_unknown_session_answers_as_wrong_credentials(case: Case) -> None:
    """An unknown name and a known name with the wrong key get the very same answer."""
    unknown = [
        await case.deliver(case.unknown_session("para ninguém"), url=url)
        for url in (case.webhook_url, case.generic_url)
    ]
    case.break_webhook_auth()
    wrong = await case.deliver(case.inbound_text("impostor"))
    for answer in unknown:
        assert answer.status_code == 401, answer.text
        assert answer.json()["error_code"] == "UNAUTHORIZED"
        assert answer.content == wrong.content
    assert await case.stored() == []


async def test_unknown_provider_is_404(case: Case) -> None:
    answer = await case.deliver(
        case.inbound_text("x"), url=f"{case.server.base_url}/api/webhooks/telegram"
    )
    assert answer.status_code == 404


async def test_statuses_only_move_forward(case: Case) -> None:
    await case.deliver(case.inbound_text("oi"))
    async with case.tenant.chat_socket(case.tenant.agent_token) as agent:
        message_id, wamid = await _sent_reply(case, agent, "já vai")
        read = await case.deliver(case.ack(wamid, "read"))
        assert read.status_code == 200 and read.json()["statuses"] == 1
        await agent.expect("message_status", lambda f: f["status"] == "read")
        for _ in range(2):  # a late delivered, and the read again
            late = await case.deliver(case.ack(wamid, "delivered"))
            assert late.status_code == 200, late.text
            assert late.json()["statuses"] == 0 and late.json()["ignored"] == 1
        again = await case.deliver(case.ack(wamid, "read"))
        assert again.status_code == 200 and again.json()["statuses"] == 0
        await case.deliver(case.inbound_text("marcador"))
        marker = await agent.expect("new_message")
        assert marker["message"]["text"] == "marcador"
    kinds = [(f["type"], f.get("status")) for f in agent.seen]
    assert ("message_delivered", None) not in kinds  # nothing moved backward on the socket
    assert kinds.count(("message_status", "read")) == 1
    assert (await case.message(message_id)).status == "read"


async def test_inbound_media_is_served_through_atende(case: Case) -> None:
    image = b"\xff\xd8\xff\xe0 a real jpeg would be longer " + bytes(range(256))
    async with case.tenant.chat_socket(case.tenant.agent_token) as agent:
        answer = await case.deliver(case.inbound_image(image, "olha a foto"))
        assert answer.status_code == 200 and answer.json()["stored"] == 1, answer.text
        frame = await agent.expect("new_message")
    assert frame["message"]["text"] == "olha a foto"
    message_id = frame["message"]["id"]
    stored = await case.message(message_id)
    assert stored.message_type == "image"
    assert stored.media is not None and stored.media["caption"] == "olha a foto"
    assert stored.media["mimetype"] == "image/jpeg"
    async with case.http() as http:
        listed = await http.get(
            f"/api/v1/conversations/{stored.conversation_id}/messages",
            headers=case.tenant.auth(case.tenant.agent_token),
        )
        content = listed.json()[0]["content"]
        assert content["media_url"] == f"/api/v1/media/{message_id}"  # Atende's own URL
        assert content["caption"] == "olha a foto" and content["mimetype"] == "image/jpeg"
        served = await http.get(
            content["media_url"], headers=case.tenant.auth(case.tenant.agent_token)
        )
        anonymous = await http.get(content["media_url"])
    assert served.status_code == 200, served.text
    assert served.content == image
    assert served.headers["content-type"].startswith("image/jpeg")
    assert anonymous.status_code == 401
    key = case.fake.api_key
    assert key not in listed.text and key not in str(frame)
    assert all(key not in value for value in served.headers.values())
    fetches = [
        r for r in case.fake.requests if r.method in ("GET", "POST") and r not in case.sends()
    ]
    assert fetches and all(r.headers.get(case.auth_header) == case.auth_value() for r in fetches)


async def test_inbound_media_of_another_tenant_is_not_served(case: Case) -> None:
    await case.deliver(case.inbound_image(b"secret picture", "privada"))
    [stored] = await case.stored()
    from atende.services.auth import mint_token

    stranger = mint_token(
        case.server.ctx.settings,
        user_id=case.tenant.agent_id,
        tenant_id=case.tenant.session_id,  # any other tenant id
        role="admin",
    )
    async with case.http() as http:
        answer = await http.get(
            f"/api/v1/media/{stored.id}", headers={"Authorization": f"Bearer {stranger}"}
        )
    assert answer.status_code in (401, 404)
    assert answer.content != b"secret picture"


@pytest.mark.parametrize("case", ["cloud"], indirect=True)
async def test_meta_verification_handshake(case: Case) -> None:
    assert isinstance(case, CloudCase)
    for path in ("/api/webhooks/cloud", "/api/webhooks/whatsapp"):
        async with case.http() as http:
            ok = await http.get(
                path,
                params={
                    "hub.mode": "subscribe",
                    "hub.verify_token": case.verify_token,
                    "hub.challenge": "1158201444",
                },
            )
            wrong = await http.get(
                path,
                params={
                    "hub.mode": "subscribe",
                    "hub.verify_token": "not-it",
                    "hub.challenge": "1158201444",
                },
            )
            no_mode = await http.get(
                path, params={"hub.verify_token": case.verify_token, "hub.challenge": "1"}
            )
        assert ok.status_code == 200 and ok.text == "1158201444"  # echoed raw, not JSON
        assert wrong.status_code in (401, 403) and "1158201444" not in wrong.text
        assert no_mode.status_code in (401, 403)
    async with case.http() as http:
        other = await http.get(
            "/api/webhooks/waha", params={"hub.mode": "subscribe", "hub.challenge": "1"}
        )
    assert other.status_code == 404


@pytest.mark.parametrize("case", ["cloud"], indirect=True)
async def test_meta_events_without_a_phone_number_are_ignored(case: Case) -> None:
    """`account_update`, template and other fields carry no phone_number_id: 200, ignored."""
    for url in (case.webhook_url, case.generic_url):
        answer = await case.deliver(case.connection("connected"), url=url)
        assert answer.status_code == 200, answer.text
        assert answer.json()["stored"] == 0
    assert await case.stored() == []


async def test_events_we_do_not_handle_are_acknowledged(case: Case) -> None:
    body = case.inbound_text("reagiu")
    if case.provider.value == "evolution":
        body["event"] = "presence.update"
    elif case.provider.value == "waha":
        body["event"] = "message.reaction"
    elif case.provider.value == "cloud":
        body["entry"][0]["changes"][0]["value"]["messages"][0]["type"] = "reaction"
        body["entry"][0]["changes"][0]["value"]["messages"][0]["reaction"] = {"emoji": "👍"}
    else:
        body["event"] = "typing"
    for url in (case.webhook_url, case.generic_url):
        answer = await case.deliver(body, url=url)
        assert answer.status_code == 200, answer.text
        assert answer.json()["stored"] == 0
    assert await case.stored() == []
