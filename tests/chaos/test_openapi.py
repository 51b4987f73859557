"""Schemathesis over Atende's own OpenAPI: no 5xx, and every answer as the document declares it.

The schema is loaded from the running test server's `/openapi.json` and every documented
operation is called over real loopback HTTP as a tenant admin (so requests get past the token
check), three ways: valid requests with generated ids, valid requests with the ids of the
tenant's real rows (so they reach deep code), and invalid requests. Each answer must not be a
5xx and must match its declared status code, content type and body schema; every refusal must be
JSON with an `error_code`.

Schemathesis is synchronous (requests + hypothesis): it runs in a worker thread while the
session's event loop keeps serving. The run is bounded: EXAMPLES per operation and strategy, and
an overall time budget shared out between the runs (a run past its share stops sending).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, Case, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.chaos.isolation import DELIBERATE_5XX
from tests.chaos.summary import report
from tests.harness import Server, Tenant

EXAMPLES = int(os.environ.get("ATENDE_OPENAPI_EXAMPLES", "15"))
BUDGET_SECS = float(os.environ.get("ATENDE_OPENAPI_BUDGET_SECS", "70"))
REQUEST_TIMEOUT_SECS = 10.0
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]
# 502/503 are SPEC's own answers (DELIBERATE_5XX); _refusal_problem checks their error_code.
CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {
            "not_a_server_error": {
                "expected-statuses": ["2XX", "3XX", "4XX", *map(str, DELIBERATE_5XX)]
            }
        }
    }
)
HEALTH_CHECKS = [
    HealthCheck.too_slow,
    HealthCheck.filter_too_much,
    HealthCheck.data_too_large,
    HealthCheck.large_base_example,
]
HYPOTHESIS = settings(
    max_examples=EXAMPLES,
    deadline=None,  # a request's time is the server's, not the generator's
    database=None,  # nothing written under .hypothesis/
    derandomize=True,  # the same cases on every CI run: a failure is reproducible
    suppress_health_check=HEALTH_CHECKS,
    phases=[Phase.explicit, Phase.generate],  # findings are collected, not shrunk
)


@dataclass(frozen=True)
class Run:
    """One strategy for one operation."""

    label: str
    mode: GenerationMode
    path_parameters: dict[str, str] | None  # fixed to real ids, or generated when None


@dataclass
class Outcome:
    requests: int = 0
    sent: Counter[str] = field(default_factory=Counter)  # requests per operation
    operations: int = 0
    runs: int = 0
    unsent: int = 0  # examples dropped because their run's share of the budget was used
    findings: dict[tuple[str, str, int], str] = field(default_factory=dict)

    def add(self, operation: str, problem: str, status: int, example: str) -> None:
        self.findings.setdefault((operation, problem, status), example)

    def count(self, kinds: tuple[str, ...]) -> int:
        return sum(1 for (_, problem, _) in self.findings if problem.startswith(kinds))


# -- the tenant's real rows ---------------------------------------------------------------------
async def _real_ids(tenant: Tenant) -> dict[str, str]:
    """Ids of rows the tenant owns: a conversation, its contact's phone, a media message."""
    phone = "5511912340000"
    assert (await tenant.customer_says("olá, fuzz", phone=phone)).status_code == 200
    media = await _post_sandbox_image(tenant, phone)
    assert media.status_code == 200, media.text
    async with tenant.http() as http:
        conversations = (await http.get("/api/v1/conversations", headers=tenant.auth())).json()
        conversation_id = conversations[0]["id"]
        messages = (
            await http.get(
                f"/api/v1/conversations/{conversation_id}/messages", headers=tenant.auth()
            )
        ).json()
    message_id = next(m["id"] for m in messages if m["message_type"] == "image")
    return {
        "tenant_id": str(tenant.id),
        "conversation_id": conversation_id,
        "phone_number": phone,
        "session_id": str(tenant.session_id),
        "message_id": message_id,
        "provider": "sandbox",
        "event_slug": "messages-upsert",
    }


async def _post_sandbox_image(tenant: Tenant, phone: str) -> httpx.Response:
    """An inbound image whose URL the gateway no longer serves (fetching it must not 5xx)."""
    async with tenant.http() as http:
        return await http.post(
            "/api/webhooks/sandbox",
            json={
                "session": tenant.session_name,
                "from": phone,
                "type": "image",
                "media_url": f"{tenant.server.base_url}/gone/photo.jpg",
                "mimetype": "image/jpeg",
                "caption": "foto",
                "id": "fuzz-image-1",
            },
            headers={"X-Webhook-Secret": tenant.webhook_secret},
        )


# -- one operation, one strategy ----------------------------------------------------------------
def _runs(schema: OpenApiSchema, real_ids: dict[str, str]) -> list[tuple[APIOperation, Run]]:
    runs: list[tuple[APIOperation, Run]] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        fixed = {k: v for k, v in real_ids.items() if f"{{{k}}}" in operation.path}
        runs.append((operation, Run("generated ids", GenerationMode.POSITIVE, None)))
        if fixed:
            runs.append((operation, Run("real ids", GenerationMode.POSITIVE, fixed)))
        runs.append((operation, Run("invalid", GenerationMode.NEGATIVE, None)))
    return runs


def _refusal_problem(response: Response) -> str | None:
    """Our own rules on top of the schema: a refusal is JSON with a non-empty `error_code`,
    and a 502/503 is one of the deliberate ones."""
    status = response.status_code
    if status < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        return "refusal is not JSON"
    code = body.get("error_code") if isinstance(body, dict) else None
    if not isinstance(code, str) or not code:
        return "refusal has no error_code"
    if status >= 500 and code not in DELIBERATE_5XX.get(status, set()):
        return f"ServerError: {status} {code} is not a deliberate answer"
    return None


def _check(case: Case, response: Response, outcome: Outcome) -> None:
    problems: list[str] = []
    try:
        case.validate_response(response, checks=CHECKS)
    except BaseExceptionGroup as group:  # schemathesis' FailureGroup
        problems += [type(failure).__name__ for failure in group.exceptions]
    except AssertionError as failure:  # a single schemathesis Failure
        problems.append(type(failure).__name__)
    refusal = _refusal_problem(response)
    if refusal is not None:
        problems.append(refusal)
    for problem in problems:
        outcome.add(case.operation.label, problem, response.status_code, _example(case, response))


def _example(case: Case, response: Response) -> str:
    return f"{case.as_curl_command()}\n  -> {response.status_code} {response.text[:300]}"


def _fuzz_one(
    operation: APIOperation, run: Run, token: str, share_secs: float, outcome: Outcome
) -> None:
    stop_at = time.monotonic() + share_secs
    strategy = operation.as_strategy(generation_mode=run.mode, path_parameters=run.path_parameters)

    @given(case=strategy)
    @HYPOTHESIS
    def call(case: Case) -> None:
        if time.monotonic() > stop_at:
            outcome.unsent += 1
            return
        response = case.call(
            headers={"Authorization": f"Bearer {token}"}, timeout=REQUEST_TIMEOUT_SECS
        )
        outcome.requests += 1
        outcome.sent[operation.label] += 1
        _check(case, response, outcome)

    try:
        call()
    except Unsatisfiable:
        # Nothing to make invalid (no parameters, no body): there is no negative case.
        if run.mode != GenerationMode.NEGATIVE:
            raise


def _fuzz(schema_url: str, token: str, real_ids: dict[str, str]) -> Outcome:
    schema = schemathesis.openapi.from_url(schema_url, config=CONFIG, timeout=REQUEST_TIMEOUT_SECS)
    runs = _runs(schema, real_ids)
    outcome = Outcome(operations=len({op.label for op, _ in runs}), runs=len(runs))
    deadline = time.monotonic() + BUDGET_SECS
    for index, (operation, run) in enumerate(runs):
        # Up to three fair shares of what is left: a slow run (argon2 logins) may use the time
        # quick ones did not, and the whole never exceeds the budget.
        left = max(deadline - time.monotonic(), 0.0)
        _fuzz_one(operation, run, token, min(left, 3 * left / (len(runs) - index)), outcome)
    return outcome


def _describe(outcome: Outcome) -> tuple[str, str]:
    tried = (
        f"{outcome.requests} requests over {outcome.operations} operations "
        f"({outcome.runs} runs: generated ids, real ids, invalid; "
        f"{outcome.unsent} examples past the time budget)"
    )
    if not outcome.findings:
        return tried, "nothing (0 server errors, 0 contract breaks)"
    server = outcome.count(("ServerError",))
    return tried, (
        f"{len(outcome.findings)} findings ({server} server errors, "
        f"{len(outcome.findings) - server} contract breaks)"
    )


async def test_openapi_fuzz(server: Server, tenant: Tenant) -> None:
    real_ids = await _real_ids(tenant)
    started = time.monotonic()
    outcome = await asyncio.to_thread(
        _fuzz, f"{server.base_url}/openapi.json", tenant.admin_token, real_ids
    )
    tried, lost = _describe(outcome)
    report("openapi fuzz", tried=f"{tried} in {time.monotonic() - started:.0f} s", lost=lost)
    starved = outcome.operations - len(outcome.sent)
    assert starved == 0, f"{starved} operations got no request within the time budget"
    details = "\n".join(
        f"{op} [{problem}, {status}]\n  {example}"
        for (op, problem, status), example in sorted(outcome.findings.items())
    )
    assert not outcome.findings, f"schemathesis findings:\n{details}"
