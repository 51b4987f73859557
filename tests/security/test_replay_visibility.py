"""Issue 10 item 8: replay shows what the user may see now, not what it could see then.

Resuming with `last_event_id` used to replay each event with the audience stored when it was
made: agent 1 got back a conversation since reassigned to agent 2 (its messages, its ticks, its
typing), and agent 2 missed the history of the conversation it was just given. The same story is
replayed on all three dialects (/ws/chat, /api/v1/conversations/ws, Socket.IO).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from sqlalchemy import event
from websockets.asyncio.client import connect

from tests.harness import Tenant, WsClient
from tests.realtime.sioclient import sio_client
from tests.security.colleagues import Agent, another_agent, conversations_of

DIALECTS = ("ws_chat", "conversations_ws", "socketio")
GIVEN_PHONE = "5511970001001"  # the conversation agent 1 had, now agent 2's
SHARED_PHONE = "5511970001002"  # a conversation in the shared queue
CUSTOMER_TEXTS = ("segredo de C 1", "segredo de C 2", "segredo de C 3")
REPLY_TEXT = "resposta em C"
SHARED_TEXT = "mensagem pública"


@dataclass(frozen=True)
class Story:
    given_id: str  # the conversation reassigned from agent 1 to agent 2
    reply_id: str  # agent 1's message in it (which got ✓✓)
    last_event_id: int  # the shared conversation's message, the story's last event
    colleague: Agent  # agent 2

    def secrets(self) -> list[str]:
        """Everything that would show agent 1 something of the given conversation."""
        return [self.given_id, self.reply_id, GIVEN_PHONE, REPLY_TEXT, *CUSTOMER_TEXTS]


def has_text(text: str) -> Callable[[dict[str, Any]], bool]:
    return lambda frame: bool(frame["message"]["text"] == text)


async def tell(tenant: Tenant) -> Story:
    """Agent 1 works conversation C live (reads, types, replies, sees ✓✓); C is then given to
    agent 2; a customer then writes into an unassigned conversation U."""
    colleague = await another_agent(tenant)
    async with tenant.chat_socket(tenant.agent_token) as live, tenant.http() as http:
        for text in CUSTOMER_TEXTS:
            await tenant.customer_says(text, phone=GIVEN_PHONE)
            await live.expect("new_message", has_text(text))
        [given] = await conversations_of(tenant, GIVEN_PHONE)
        await tenant.assign(given["id"], tenant.agent_id)
        url = f"/api/v1/conversations/{given['id']}"
        agent = tenant.auth(tenant.agent_token)
        assert (await http.post(f"{url}/typing", headers=agent)).status_code == 200
        sent = await http.post(f"{url}/messages", json={"content": REPLY_TEXT}, headers=agent)
        assert sent.status_code == 200, sent.text
        reply_id = sent.json()["id"]
        await live.expect(
            "message_status", lambda f: f["message_id"] == reply_id and f["status"] == "read"
        )
        await tenant.assign(given["id"], colleague.id)
        await tenant.customer_says(SHARED_TEXT, phone=SHARED_PHONE)
        last = await live.expect("new_message", has_text(SHARED_TEXT))
    return Story(given["id"], reply_id, int(last["event_id"]), colleague)


# -- resuming from 0 on each dialect -------------------------------------------------------------
async def resume(tenant: Tenant, dialect: str, token: str, user_id: str, upto: int) -> str:
    """Everything a socket resuming from event 0 receives up to event `upto`, as JSON text."""
    if dialect == "socketio":
        async with sio_client(tenant.server.base_url, token, last_event_id=0) as sio:
            await sio.expect("message:new", lambda d: d["event_id"] >= upto)
            return orjson.dumps(sio.seen).decode()
    async with _plain_socket(tenant, dialect, token, user_id) as ws:
        while not any(int(f.get("event_id") or 0) >= upto for f in ws.seen):
            await ws.next()
        return orjson.dumps(ws.seen).decode()


@asynccontextmanager
async def _plain_socket(
    tenant: Tenant, dialect: str, token: str, user_id: str
) -> AsyncIterator[WsClient]:
    if dialect == "ws_chat":
        async with tenant.chat_socket(token, last_event_id=0) as ws:
            yield ws
        return
    async with connect(f"{tenant.server.ws_base}/api/v1/conversations/ws?last_event_id=0") as raw:
        ws = WsClient(raw)
        await ws.send({"type": "auth", "token": token, "user_id": user_id})
        await ws.expect("connected")
        yield ws


@contextmanager
def visibility_queries(tenant: Tenant) -> Iterator[list[str]]:
    """The statements that look up conversations' current assignees, while the block runs."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "conversations.id IN" in statement:
            seen.append(statement)

    engine = tenant.server.ctx.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _frames_about(dialect: str, text: str, story: Story) -> dict[str, bool]:
    """What of the given conversation a replay carried, dialect by dialect."""
    frames = orjson.loads(text)
    if dialect == "socketio":
        named = [(name, data) for name, data in frames]
    else:
        named = [(f.get("type"), f) for f in frames]
    blob = {name: orjson.dumps(data).decode() for name, data in named}
    status_kind = {
        "ws_chat": "message_status",
        "conversations_ws": "message_status_updated",
        "socketio": "message:status",
    }[dialect]
    typing_kind = {"ws_chat": "typing", "conversations_ws": "typing_start"}.get(dialect)
    statuses = [d for n, d in named if n == status_kind]
    return {
        "customer text": all(t in text for t in CUSTOMER_TEXTS),
        "reply text": REPLY_TEXT in text,
        "status": any(story.reply_id in orjson.dumps(d).decode() for d in statuses),
        "typing": typing_kind is None or typing_kind in blob,
    }


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_replay_applies_todays_visibility(tenant: Tenant, dialect: str) -> None:
    story = await tell(tenant)

    with visibility_queries(tenant) as queries:
        agent1 = await resume(
            tenant, dialect, tenant.agent_token, str(tenant.agent_id), story.last_event_id
        )
    leaked = [s for s in story.secrets() if s in agent1]
    assert leaked == [], f"agent 1 was replayed a conversation now agent 2's: {leaked}"
    assert SHARED_TEXT in agent1  # the shared queue is everyone's
    assert len(queries) == 1, "one query per replay batch, not one per event"

    agent2 = await resume(
        tenant, dialect, story.colleague.token, str(story.colleague.id), story.last_event_id
    )
    carried = _frames_about(dialect, agent2, story)
    assert all(carried.values()), f"agent 2 missed the history it was given: {carried}"
    assert SHARED_TEXT in agent2

    admin = await resume(
        tenant, dialect, tenant.admin_token, str(tenant.admin_id), story.last_event_id
    )
    assert all(s in admin for s in story.secrets()), "admins see everything, as before"
