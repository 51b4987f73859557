"""Chaos: agents send N messages through an Evolution gateway that fails 30% of its calls (500s,
timeouts before the work, timeouts after the message really went out), with one SIGKILL of
Atende mid-run. The gateway posts back what the real one does: the `send.message` echo, then
SERVER_ACK / DELIVERY_ACK / READ, some out of order, some twice.

At the end nothing is `pending`; each message is `sent` or later with the gateway having sent it
exactly once, or `failed` with a reason and never sent; no status ever moved backward, neither on
an agent's socket that resumed across the restart nor in the event log.

A timeout after the gateway accepted is ambiguous to any client: Evolution and WAHA take no
idempotency key (PROVIDERS.md), so Atende cannot ask "did you send it?". What settles it is the
gateway's own word: its `send.message` echo (or an ack) carries the id of the message it sent,
and once Atende holds that id it marks the message sent instead of sending it again. The only
duplicates left are sends whose retry went out before any such word arrived; this test counts
them and allows them only for messages that were in flight when the process was killed.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

from atende.types import MessageStatus
from tests.chaos.outbound import PHONES, Accepted, Ledger, Observer, Senders, StatusFrame, phone_of
from tests.chaos.proc import ServeProcess, base_env, cli, cli_token
from tests.chaos.summary import report
from tests.fakes.evolution import FakeEvolution
from tests.fakes.server import Chaos, Fault
from tests.multi.conftest import BACKENDS, PG_ADMIN_URL, wait_until

MESSAGES = int(os.environ.get("ATENDE_CHAOS_OUTBOUND", "300"))
SEED = int(os.environ.get("ATENDE_CHAOS_SEED", "20250611"))
FAIL_RATE = 0.30
GATEWAY_TIMEOUT_SECS = 1.0  # Atende's client timeout towards the gateway
LATE_SECS = 2.0  # a LATE gateway answers this long after the request: past the client's timeout
BACKOFF_MAX_SECS = 0.5
KILL_AT = 0.4  # SIGKILL once the gateway has sent this share of the messages
NOT_ON_WHATSAPP = PHONES[-1]  # its messages must end `failed`, with the gateway's reason
SESSION = "chaos-evo"
WEBHOOK_KEY = "chaos-evolution-webhook-key"
DEADLINE_SECS = 85.0
# Atende looks for the echo right before sending; its request then takes a moment to reach the
# gateway. An echo stored within that moment could not have stopped the resend.
LAST_LOOK_SECS = 0.5


# -- the run -----------------------------------------------------------------------------------
@asynccontextmanager
async def fresh_postgres() -> AsyncIterator[str]:
    name = f"atende_chaos_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        admin = await asyncpg.connect(PG_ADMIN_URL)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def chaos_env(database_url: str) -> dict[str, str]:
    return base_env(
        database_url,
        ATENDE_GATEWAY_TIMEOUT_SECS=str(GATEWAY_TIMEOUT_SECS),
        ATENDE_OUTBOX_BACKOFF_BASE_SECS="0.05",
        ATENDE_OUTBOX_BACKOFF_MAX_SECS=str(BACKOFF_MAX_SECS),
        ATENDE_OUTBOX_MAX_ATTEMPTS="6",
    )


def provision(env: dict[str, str], gateway_url: str) -> tuple[str, str]:
    """Tenant, admin and Evolution session through the CLI; returns (tenant id, token)."""
    tenant = cli(env, "create-tenant", "--name", "Outbound chaos")
    user = cli(
        env,
        *("create-user", "--tenant", tenant["id"], "--email", "out@t.test"),
        *("--password", "tempestade-de-envios", "--role", "admin"),
    )
    cli(
        env,
        *("create-session", "--tenant", tenant["id"], "--provider", "evolution"),
        *("--name", SESSION, "--base-url", gateway_url, "--api-key", "evo-global-key"),
        *("--webhook-secret", WEBHOOK_KEY),
    )
    return tenant["id"], cli_token(env, user["id"])


async def in_flight_at_kill(db: asyncpg.Pool) -> set[str]:
    """Texts of the messages the dead process had tried to send without knowing the outcome:
    pending, tried, no gateway id yet (being sent, or waiting to retry after a timeout whose
    send the gateway may have done: its echo now finds a dead process)."""
    rows = await db.fetch(
        "SELECT text FROM messages WHERE status = 'pending' AND whatsapp_message_id IS NULL"
        " AND attempts > 0"
    )
    return {row["text"] for row in rows}


async def kill_and_restart(server: ServeProcess, ledger: Ledger, db: asyncpg.Pool) -> set[str]:
    await ledger.kill_mark.wait()
    await server.kill()
    in_flight = await in_flight_at_kill(db)
    await server.start()
    return in_flight


async def settle(db: asyncpg.Pool, ledger: Ledger, observer: Observer, tenant_id: str) -> None:
    """No message pending, every gateway webhook delivered or given up, the socket caught up."""

    async def nothing_pending() -> bool:
        count = await db.fetchval("SELECT count(*) FROM messages WHERE status = 'pending'")
        return bool(count == 0)

    await wait_until(nothing_pending, "the outbox to finish", wait_secs=DEADLINE_SECS)
    await ledger.drain()
    last = await db.fetchval(
        "SELECT last_event_id FROM tenants WHERE id = $1", uuid.UUID(tenant_id)
    )
    await observer.wait_for(int(last))


# -- the verdict -------------------------------------------------------------------------------
@dataclass
class Verdict:
    by_status: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    duplicates: dict[str, int] = field(default_factory=dict)  # text → extra gateway sends
    lost: set[str] = field(default_factory=set)  # never stored, never sent, or stuck
    ambiguous_timeouts: int = 0  # gateway sent it, Atende timed out
    duplicate_causes: dict[str, str] = field(default_factory=dict)  # text → why
    echo_copies: int = 0  # duplicates the inbox shows too (their echo came late)
    revived: int = 0  # failed, then a gateway ack proved it was sent


def backward_moves(frames: list[StatusFrame]) -> list[str]:
    """Status changes of one message that did not move forward, in event-id order."""
    by_message: dict[str, list[StatusFrame]] = defaultdict(list)
    for frame in sorted(frames, key=lambda f: f.event_id):
        by_message[frame.message_id].append(frame)
    bad = []
    for message_id, seq in by_message.items():
        ranks = [MessageStatus(f.status).rank for f in seq]
        if any(b <= a for a, b in itertools.pairwise(ranks)):
            bad.append(f"{message_id}: {[f.status for f in seq]}")
    return bad


async def logged_statuses(db: asyncpg.Pool, tenant_id: str) -> list[StatusFrame]:
    rows = await db.fetch(
        "SELECT id, data FROM events WHERE tenant_id = $1 AND type = 'message.status' ORDER BY id",
        uuid.UUID(tenant_id),
    )
    out = []
    for row in rows:
        data = json.loads(row["data"])
        out.append(StatusFrame(int(row["id"]), data["message_id"], data["status"]))
    return out


def judge_message(
    verdict: Verdict, row: asyncpg.Record, ledger: Ledger, in_flight: set[str]
) -> None:
    text, status = row["text"], row["status"]
    sends = ledger.accepted.get(text, [])
    verdict.by_status[status] += 1
    verdict.ambiguous_timeouts += sum(1 for s in sends if s.fault is not Fault.NONE)
    if phone_of(text) == NOT_ON_WHATSAPP and status != MessageStatus.FAILED.value:
        verdict.problems.append(f"{text}: to a number not on WhatsApp, yet {status}")
    if status == MessageStatus.PENDING.value:
        verdict.lost.add(text)
        verdict.problems.append(f"{text}: still pending")
    elif status == MessageStatus.FAILED.value:
        if not row["error"]:
            verdict.problems.append(f"{text}: failed without a reason")
        if sends:
            verdict.problems.append(f"{text}: failed, but the gateway sent it {len(sends)}x")
    elif not sends:
        verdict.lost.add(text)
        verdict.problems.append(f"{text}: {status}, but the gateway never sent it")
    elif row["whatsapp_message_id"] not in {s.wamid for s in sends}:
        verdict.problems.append(f"{text}: stored id is none the gateway gave")
    if len(sends) > 1:
        judge_duplicate(verdict, ledger, sends, in_flight)


def judge_duplicate(
    verdict: Verdict, ledger: Ledger, sends: list[Accepted], in_flight: set[str]
) -> None:
    """A message the gateway sent more than once. Allowed only where Atende could not know: its
    process died mid-send, or the resend left before the gateway's echo of an earlier send had
    reached Atende (no idempotency key exists to do better)."""
    text = sends[0].text
    verdict.duplicates[text] = len(sends) - 1
    for i, resend in enumerate(sends[1:], start=1):
        echoed = [ledger.echo_stored_at.get(s.wamid) for s in sends[:i]]
        if any(at is not None and at < resend.at - LAST_LOOK_SECS for at in echoed):
            verdict.problems.append(f"{text}: resent after the gateway's echo was stored")
            verdict.duplicate_causes[text] = "after the echo"
        elif text in in_flight:
            verdict.duplicate_causes.setdefault(text, "in flight at the kill")
        else:
            verdict.duplicate_causes.setdefault(text, "before a slow echo")


async def judge(db: asyncpg.Pool, ledger: Ledger, texts: list[str], in_flight: set[str]) -> Verdict:
    verdict = Verdict()
    rows = await db.fetch(
        "SELECT text, status, error, whatsapp_message_id, sender_id IS NOT NULL AS ours"
        " FROM messages WHERE direction = 'outbound' ORDER BY created_at"
    )
    ours = [row for row in rows if row["ours"]]
    stored = Counter(row["text"] for row in ours)
    verdict.problems += [f"{t}: stored {n}x" for t, n in stored.items() if n != 1]
    verdict.lost |= set(texts) - set(stored)
    verdict.problems += [f"{t}: never stored" for t in set(texts) - set(stored)]
    for row in ours:
        judge_message(verdict, row, ledger, in_flight)
    judge_echo_copies(verdict, [row for row in rows if not row["ours"]], ledger, ours)
    return verdict


def judge_echo_copies(
    verdict: Verdict, copies: list[asyncpg.Record], ledger: Ledger, ours: list[asyncpg.Record]
) -> None:
    """An echo Atende could not match to a pending message of ours is stored as a message sent
    from the phone. That is the truth exactly when the gateway really sent a second copy (its
    echo came after our row took the other copy's id): the customer sees it twice, and so does
    the inbox. A copy of anything sent once is a phantom."""
    our_ids = {row["whatsapp_message_id"] for row in ours}
    for row in copies:
        sends = {s.wamid for s in ledger.accepted.get(row["text"], [])}
        if row["whatsapp_message_id"] not in sends - our_ids:
            verdict.problems.append(f"{row['text']}: a copy that is not a real second send")
    verdict.echo_copies = len(copies)


def revived(frames: list[StatusFrame]) -> int:
    """Messages that went `failed` and later got a gateway ack (so were sent after all)."""
    failed = {f.message_id for f in frames if f.status == MessageStatus.FAILED.value}
    after = {f.message_id for f in frames if f.message_id in failed and f.status != "failed"}
    return len(after)


def summarise(
    verdict: Verdict, chaos: Chaos, in_flight: set[str], senders: Senders, ledger: Ledger
) -> None:
    outcome = ", ".join(f"{n} {s}" for s, n in sorted(verdict.by_status.items()))
    faults = ", ".join(f"{n} {f}" for f, n in sorted(chaos.drawn.items()))
    webhooks = ", ".join(f"{n} {k}" for k, n in sorted(ledger.webhooks.items()))
    latencies = sorted(ledger.echo_latencies()) or [0.0]
    causes: dict[str, list[str]] = defaultdict(list)
    for text, cause in sorted(verdict.duplicate_causes.items()):
        causes[cause].append(text)
    report(
        "chaos outbound",
        f"{MESSAGES} sends, 1 SIGKILL ({len(in_flight)} sends in flight, "
        f"{len(senders.unanswered)} REST sends unanswered); gateway calls {faults}; "
        f"{verdict.ambiguous_timeouts} timeouts after a real send; outcome {outcome}; "
        f"{verdict.revived} failed then acked; {sum(verdict.duplicates.values())} duplicate "
        f"gateway sends {dict(causes)}, {verdict.echo_copies} of them shown twice in the inbox; "
        f"echo stored after p50 "
        f"{latencies[len(latencies) // 2]:.2f}s max {latencies[-1]:.2f}s; webhooks {webhooks}; "
        f"{len(verdict.problems)} problems",
        f"{len(verdict.lost)} messages" if verdict.lost else "nothing",
    )


@pytest.mark.timeout(DEADLINE_SECS + 60)
async def test_outbound_through_a_failing_gateway_and_a_sigkill(tmp_path: Path) -> None:
    if "postgres" not in BACKENDS:
        pytest.skip("the production shape (FOR UPDATE SKIP LOCKED outbox) needs PostgreSQL")
    texts = [f"chaos-out-{i}" for i in range(MESSAGES)]
    chaos = Chaos(rate=FAIL_RATE, seed=SEED, late_secs=LATE_SECS)
    fake = FakeEvolution(webhook_key=WEBHOOK_KEY, instances={SESSION: "open"}, chaos=chaos)
    fake.set_unknown_numbers({NOT_ON_WHATSAPP})
    async with (
        fresh_postgres() as database_url,
        fake.running() as gateway_url,
        asyncpg.create_pool(database_url.replace("+asyncpg", ""), min_size=1, max_size=4) as db,
    ):
        env = chaos_env(database_url)
        server = ServeProcess(env, tmp_path / "serve.log")
        await server.start()
        try:
            tenant_id, token = provision(env, gateway_url)
            webhook_url = f"{server.base_url}/api/webhooks/evolution"
            ledger = Ledger(fake, webhook_url, SESSION, SEED, int(MESSAGES * KILL_AT))
            connected = await fake.deliver(
                ledger.webhook_url, fake.connection("open", instance=SESSION)
            )
            assert connected.status_code == 200, connected.text
            fake.on_answer = ledger.on_answer
            observer = Observer(server, tenant_id, token)
            senders = Senders(server, tenant_id, token, db)
            async with asyncio.timeout(DEADLINE_SECS):
                watching = asyncio.create_task(observer.run())
                killing = asyncio.create_task(kill_and_restart(server, ledger, db))
                await senders.send_all(texts)
                in_flight = await killing
                await settle(db, ledger, observer, tenant_id)
                watching.cancel()
        finally:
            await server.stop()
        verdict = await judge(db, ledger, texts, in_flight)
        logged = await logged_statuses(db, tenant_id)
    verdict.problems += [f"socket: {b}" for b in backward_moves(observer.statuses)]
    verdict.problems += [f"log: {b}" for b in backward_moves(logged)]
    verdict.revived = revived(logged)
    summarise(verdict, chaos, in_flight, senders, ledger)
    assert not verdict.problems, verdict.problems[:20]
    assert all(chaos.drawn[fault] for fault in Fault), chaos.drawn  # every kind of failure ran
    assert verdict.ambiguous_timeouts > 0  # the hard case did happen
    assert not verdict.lost
    assert observer.resyncs == 0
    assert observer.event_ids == sorted(set(observer.event_ids))  # in order, none twice
    assert [f.event_id for f in observer.statuses] == [f.event_id for f in logged]  # none lost
    assert server.starts == 2
