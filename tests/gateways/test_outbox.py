"""The sending worker against each real (fake) gateway: retries, give-up, 4xx, number checks,
restarts, and an ack that overtakes the worker's storing of the gateway's id."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from starlette.responses import Response

from atende.db.types import utcnow
from tests.fakes.evolution import FakeEvolution
from tests.fakes.server import Chaos, FakeGateway, Fault, RecordedRequest
from tests.gateways.cases import KINDS, PHONE, Case, CloudCase, open_case, reattach
from tests.gateways.conftest import gateway_settings
from tests.harness import Server, WsClient, free_port, run_server

NEW_PHONE = "5521976543210"  # a number nobody has written from: no address known yet


async def _reply(agent: WsClient, text: str, phone: str = PHONE) -> str:
    await agent.send({"type": "send_message", "phone_number": phone, "text": text})
    sent = await agent.expect("message_sent")
    assert sent["success"] is True
    return str(sent["message_id"])


async def _status(agent: WsClient, message_id: str, status: str) -> dict[str, Any]:
    return await agent.expect(
        "message_status", lambda f: f["message_id"] == message_id and f["status"] == status
    )


async def _failed(agent: WsClient, message_id: str) -> dict[str, Any]:
    return await agent.expect(
        "error",
        lambda f: (
            f["error_code"] == "MESSAGE_SEND_FAILED" and f["details"]["message_id"] == message_id
        ),
    )


async def _known_contact(case: Case) -> None:
    """The customer wrote first, so Atende knows its gateway address (no number check)."""
    answer = await case.deliver(case.inbound_text("Olá"))
    assert answer.status_code == 200, answer.text


async def test_gateway_500_twice_then_sent_exactly_once(case: Case) -> None:
    await _known_contact(case)
    case.fake.fail_next(2, status=500)
    async with case.tenant.chat_socket(case.tenant.agent_token) as agent:
        message_id = await _reply(agent, "terceira vez dá certo")
        await _status(agent, message_id, "sent")
    sends = case.sends()
    assert len(sends) == 3  # two 500s, then the one that was accepted
    path, body = case.expected_text("terceira vez dá certo")
    assert all((r.path, r.json) == (path, body) for r in sends)
    stored = await case.message(message_id)
    assert (stored.status, stored.attempts) == ("sent", 3)
    assert stored.whatsapp_message_id


async def test_gateway_always_500_fails_after_max_attempts(case: Case) -> None:
    await _known_contact(case)
    case.fake.fail_next(10, status=503)
    async with case.tenant.chat_socket(case.tenant.agent_token) as agent:
        message_id = await _reply(agent, "ninguém atende")
        status = await _status(agent, message_id, "failed")
        error = await _failed(agent, message_id)  # follows its message_status frame
    assert "gave up after 3 attempts" in error["details"]["reason"]
    assert "503" in error["details"]["reason"]
    assert status["phone_number"] == PHONE
    assert len(case.sends()) == 3  # outbox_max_attempts
    stored = await case.message(message_id)
    assert (stored.status, stored.attempts, stored.next_attempt_at) == ("failed", 3, None)


@pytest.mark.parametrize("case", ["evolution-v2", "waha", "cloud"], indirect=True)
async def test_gateway_timeouts_are_retried(case: Case) -> None:
    await _known_contact(case)
    case.fake.hang_next(1)  # longer than gateway_timeout_secs
    async with case.tenant.chat_socket(case.tenant.agent_token) as agent:
        message_id = await _reply(agent, "devagar")
        await _status(agent, message_id, "sent")
    assert len(case.sends()) == 2
    assert (await case.message(message_id)).attempts == 2


async def test_a_hung_send_does_not_hold_back_the_next_message(case: Case) -> None:
    await _known_contact(case)
    case.fake.hang_next(1)
    async with case.tenant.chat_socket(case.tenant.agent_token) as agent:
        stuck = await _reply(agent, "a que trava")
        await _eventually(lambda: _first_send(case))
        quick = await _reply(agent, "a que passa")
        await _status(agent, quick, "sent")
        # Sent while the first one's attempt is still waiting on the gateway.
        first = await case.message(stuck)
        assert (first.status, first.attempts, first.error) == ("pending", 1, None)
        await _status(agent, stuck, "sent")


async def test_a_timeout_after_the_gateway_sent_it_is_settled_by_its_echo(case: Case) -> None:
    """The gateway sends the message and never answers; its `send.message` echo brings the id
    (no idempotency key exists): the message is marked sent, not sent a second time."""
    if not isinstance(case.fake, FakeEvolution):
        pytest.skip("Evolution echoes its API sends (send.message); see outbox.py")
    fake = case.fake
    await _known_contact(case)
    echoed: list[int] = []

    async def echo(request: RecordedRequest, response: Response) -> None:
        key, body = json.loads(bytes(response.body))["key"], request.json
        text = body["text"] if "text" in body else body["textMessage"]["text"]  # v2 / v1
        payload = fake.sent_echo(key["remoteJid"], text, key["id"])
        echoed.append((await case.deliver({**payload, "instance": fake.instance})).status_code)

    fake.on_answer, fake.chaos = echo, Chaos(rate=1.0, weights={Fault.HANG: 1.0})
    try:
        async with case.tenant.chat_socket(case.tenant.agent_token) as agent:
            message_id = await _reply(agent, "só uma vez")
            await _status(agent, message_id, "sent")
    finally:
        fake.on_answer, fake.chaos = None, None
    assert echoed == [200]
    assert len(case.sends()) == 1  # the timeout did not send it again
    stored = await case.message(message_id)
    assert (stored.status, stored.attempts) == ("sent", 1)


@pytest.mark.parametrize("kind", KINDS)
async def test_gateway_down_fails_after_max_attempts(
    kind: str, gw_server: Server, gw_fakes: dict[str, FakeGateway]
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with open_case(kind, gw_server, fake=gw_fakes[kind], base_url=closed) as case:
        async with case.tenant.chat_socket(case.tenant.agent_token) as agent:
            message_id = await _reply(agent, "alô?", phone=NEW_PHONE)
            error = await _failed(agent, message_id)
        assert "gave up after 3 attempts" in error["details"]["reason"]
        assert "unreachable" in error["details"]["reason"]
        stored = await case.message(message_id)
        assert (stored.status, stored.attempts) == ("failed", 3)


async def test_gateway_4xx_fails_at_once_with_its_reason(case: Case) -> None:
    await _known_contact(case)
    case.fake.set_unknown_numbers({PHONE})  # the gateway now refuses this number
    async with case.tenant.chat_socket(case.tenant.agent_token) as agent:
        message_id = await _reply(agent, "você ainda usa este número?")
        error = await _failed(agent, message_id)
    reason = error["details"]["reason"]
    assert "gateway rejected the request (400)" in reason
    assert "gave up" not in reason
    assert len(case.sends()) == 1  # a 4xx is never retried
    stored = await case.message(message_id)
    assert (stored.status, stored.attempts) == ("failed", 1)
    assert stored.error == reason


async def test_number_not_on_whatsapp_fails_at_once(case: Case) -> None:
    case.fake.set_unknown_numbers({NEW_PHONE})
    async with case.tenant.chat_socket(case.tenant.agent_token) as agent:
        message_id = await _reply(agent, "oi", phone=NEW_PHONE)
        error = await _failed(agent, message_id)
    stored = await case.message(message_id)
    assert (stored.status, stored.attempts) == ("failed", 1)
    if case.has_number_check:
        # The gateway's own check said no: nothing was sent at all.
        assert error["details"]["reason"] == "Number is not on WhatsApp"
        assert len(case.checks()) == 1 and case.sends() == []
    else:
        assert "(400)" in error["details"]["reason"] and len(case.sends()) == 1


async def test_checked_address_is_kept_for_later_sends(case: Case) -> None:
    resolved = f"{NEW_PHONE}@s.whatsapp.net"
    if isinstance(case, CloudCase):
        # Brazil: WhatsApp knows this number without its ninth digit; Meta says so in wa_id.
        resolved = "552176543210"
        case.fake.wa_ids[NEW_PHONE] = resolved
    async with case.tenant.chat_socket(case.tenant.agent_token) as agent:
        first = await _reply(agent, "primeira", phone=NEW_PHONE)
        await _status(agent, first, "sent")
        second = await _reply(agent, "segunda", phone=NEW_PHONE)
        await _status(agent, second, "sent")
    assert len(case.checks()) == (1 if case.has_number_check else 0)
    contact = await case.contact(NEW_PHONE)
    if case.has_number_check:
        assert contact.wa_jid is not None and NEW_PHONE in contact.wa_jid
    else:
        assert contact.wa_jid == resolved
        assert [r.json["to"] for r in case.sends()] == [NEW_PHONE, resolved]


@pytest.mark.parametrize("kind", KINDS)
async def test_restart_mid_retry_resumes_and_sends_once(
    kind: str,
    gw_fakes: dict[str, FakeGateway],
    database_factory: Callable[[], AbstractAsyncContextManager[str]],
) -> None:
    """Atende stops while a message waits for its retry; a new process on the same database
    sends it when due, exactly once."""
    fake = gw_fakes[kind]
    async with database_factory() as url:
        # The retry is due 1 s after the failure: long enough to stop Atende before it is.
        settings = gateway_settings(
            url, outbox_backoff_base_secs=1.0, outbox_backoff_max_secs=1.0, outbox_max_attempts=5
        )
        async with run_server(settings) as first, open_case(kind, first, fake=fake) as mine:
            await _known_contact(mine)
            fake.fail_next(1, status=502)
            async with mine.tenant.chat_socket(mine.tenant.agent_token) as agent:
                message_id = await _reply(agent, "depois do reinício")
            waiting = await _eventually(lambda: _retry_scheduled(mine, message_id))
            assert waiting.next_attempt_at is not None
            assert waiting.next_attempt_at > utcnow()  # stopped before the retry was due
        async with run_server(settings) as second:
            again = reattach(mine, second)
            sent = await _eventually(lambda: _has_status(again, message_id, "sent"))
            assert sent.attempts == 2
            assert len(again.sends()) == 2  # the 502, then exactly one accepted send
            path, body = again.expected_text("depois do reinício")
            assert all((r.path, r.json) == (path, body) for r in again.sends())


@pytest.mark.parametrize("kind", ["evolution-v2", "cloud"])
async def test_restart_mid_send_hands_the_message_back(
    kind: str,
    gw_fakes: dict[str, FakeGateway],
    database_factory: Callable[[], AbstractAsyncContextManager[str]],
) -> None:
    """Atende stops while the gateway has not answered yet: the claim is released at shutdown
    (not left to its lease), and the next start sends the message at once."""
    fake = gw_fakes[kind]
    async with database_factory() as url:
        settings = gateway_settings(url, gateway_timeout_secs=30.0)  # a lease of 40 s
        async with run_server(settings) as first, open_case(kind, first, fake=fake) as mine:
            await _known_contact(mine)
            fake.hang_next(1)
            async with mine.tenant.chat_socket(mine.tenant.agent_token) as agent:
                message_id = await _reply(agent, "no meio do envio")
            await _eventually(lambda: _first_send(mine))
        async with run_server(settings) as second:
            again = reattach(mine, second)
            sent = await _eventually(lambda: _has_status(again, message_id, "sent"), timeout=5.0)
        assert sent.attempts == 1  # the interrupted attempt is not counted
        assert len(again.sends()) == 2  # the one left hanging, then the one that went through


async def test_ack_overtaking_the_send_answer_is_not_lost(case: Case) -> None:
    """The gateway posts its ack before our send call returns: Atende asks for a redelivery
    (503) instead of dropping it, and the redelivery lands."""
    await _known_contact(case)
    early: list[tuple[int, Any]] = []
    acks: list[dict[str, Any]] = []
    send_path = case.expected_text("x")[0]

    async def ack_first(request: RecordedRequest, response: Response) -> None:
        if request.path != send_path or response.status_code >= 300:
            return
        wamid = case.sent_id(json.loads(bytes(response.body)))
        acks.append(case.ack(wamid, "delivered"))
        answer = await case.deliver(acks[-1], attempts=1)
        early.append((answer.status_code, answer.json()))

    case.fake.on_answer = ack_first
    async with case.tenant.chat_socket(case.tenant.agent_token) as agent:
        message_id = await _reply(agent, "corrida")
        await _status(agent, message_id, "sent")
        [(status_code, body)] = early
        assert status_code == 503 and body["error_code"] == "WEBHOOK_RETRY_LATER"
        case.fake.on_answer = None
        redelivered = await case.deliver(acks[0])  # the gateway's retry
        assert redelivered.status_code == 200 and redelivered.json()["statuses"] == 1
        delivered = await agent.expect("message_delivered")
        assert delivered["message_id"] == message_id
    assert (await case.message(message_id)).status == "delivered"


async def test_ack_for_a_message_nobody_sent_is_ignored(case: Case) -> None:
    answer = await case.deliver(case.ack("ABCDEF0123456789", "read"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["statuses"] == 0 and answer.json()["ignored"] == 1


async def test_an_echo_of_one_of_two_identical_pending_texts_loses_neither(case: Case) -> None:
    """Two "ok"s in flight: the echo of the second cannot say which one it is. Neither agent
    message may be deleted or take the other's gateway id."""
    if not isinstance(case.fake, FakeEvolution) or case.kind != "evolution-v2":
        pytest.skip("the echo-before-answer order is Evolution v2's send.message")
    await _known_contact(case)
    fake = case.fake
    send_path = case.expected_text("x")[0]

    async def echo_first(request: RecordedRequest, response: Response) -> None:
        if request.path != send_path or response.status_code >= 300:
            return
        key = json.loads(bytes(response.body))["key"]
        echo = fake.sent_echo(key["remoteJid"], request.json["text"], key["id"])
        echo["instance"] = fake.instance
        answer = await case.deliver(echo)
        assert answer.status_code == 200, answer.text

    fake.hang_next(1)  # the first "ok" stays in flight
    async with case.tenant.chat_socket(case.tenant.agent_token) as agent:
        first = await _reply(agent, "ok")
        await _eventually(lambda: _first_send(case))
        fake.on_answer = echo_first
        second = await _reply(agent, "ok")
        await agent.expect(
            "message_status", lambda f: f["message_id"] == second and f["status"] == "sent"
        )
    rows = {str(m.id): m for m in await case.stored()}
    assert first in rows, "the first agent message was deleted"
    assert rows[first].status == "pending" and rows[first].whatsapp_message_id is None
    assert rows[second].whatsapp_message_id is not None


# -- helpers -------------------------------------------------------------------------------------
async def _retry_scheduled(case: Case, message_id: str) -> Any:
    msg = await case.message(message_id)
    return msg if msg.status == "pending" and msg.attempts == 1 and msg.error else None


async def _first_send(case: Case) -> Any:
    return case.sends() or None


async def _has_status(case: Case, message_id: str, status: str) -> Any:
    msg = await case.message(message_id)
    return msg if msg.status == status else None


async def _eventually(probe: Callable[[], Awaitable[Any]], timeout: float = 10.0) -> Any:
    """Poll a database condition the test can not be told about by an event."""
    async with asyncio.timeout(timeout):
        while True:
            found = await probe()
            if found is not None:
                return found
            await asyncio.sleep(0.02)
