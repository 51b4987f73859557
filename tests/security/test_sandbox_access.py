"""Issue 10 item 15: agents can not play customers, and the sandbox is only there when it is on.

The simulator posts a customer's message exactly as a gateway would: in the inbox it can not
be told from a real one. Agents used to be able to post them (and see the simulator); now the
simulator's routes are for admins, and with the sandbox off (outside development, unless
ATENDE_SANDBOX_ENABLED) neither they nor `/api/webhooks/sandbox` exist at all.
"""

from __future__ import annotations

import httpx

from tests.harness import Tenant, make_tenant, run_server, settings_for

MESSAGE = {"from": "5511912340001", "text": "sou um cliente de mentira"}


async def _sandbox_calls(tenant: Tenant, token: str | None) -> list[httpx.Response]:
    headers = tenant.auth(token) if token else {}
    async with tenant.http() as http:
        return [
            await http.get("/api/v1/sandbox/sessions", headers=headers),
            await http.post("/api/v1/sandbox/messages", json=MESSAGE, headers=headers),
        ]


async def _conversations(tenant: Tenant) -> list[object]:
    async with tenant.http() as http:
        listed: list[object] = (
            await http.get("/api/v1/conversations", headers=tenant.auth())
        ).json()
    return listed


async def test_agents_get_403_on_the_simulator(tenant: Tenant) -> None:
    for answer in await _sandbox_calls(tenant, tenant.agent_token):
        assert answer.status_code == 403, answer.text
        assert answer.json()["error_code"] == "FORBIDDEN"
    assert await _conversations(tenant) == []
    admin = await _sandbox_calls(tenant, tenant.admin_token)
    assert [a.status_code for a in admin] == [200, 200]


async def test_me_tells_the_client_whether_to_show_the_simulator(tenant: Tenant) -> None:
    async with tenant.http() as http:
        admin = (await http.get("/api/v1/auth/me", headers=tenant.auth())).json()
        agent = (await http.get("/api/v1/auth/me", headers=tenant.auth(tenant.agent_token))).json()
    assert admin["features"] == {"sandbox": True}
    assert agent["features"] == {"sandbox": False}


async def test_with_the_sandbox_off_its_routes_are_not_there(database_url: str) -> None:
    async with run_server(settings_for(database_url, sandbox_enabled=False)) as server:
        tenant = await make_tenant(server)
        answers = await _sandbox_calls(tenant, tenant.admin_token)
        async with tenant.http() as http:
            webhook = await http.post(
                "/api/webhooks/sandbox",
                json={"session": tenant.session_name, **MESSAGE},
                headers={"X-Webhook-Secret": tenant.webhook_secret},
            )
            me = (await http.get("/api/v1/auth/me", headers=tenant.auth())).json()
            spec = (await http.get("/openapi.json")).json()
            # What a path that never existed answers, method for method:
            nowhere = [
                await http.get("/api/v1/nowhere/sessions", headers=tenant.auth()),
                await http.post("/api/v1/nowhere/messages", json=MESSAGE, headers=tenant.auth()),
            ]
        for answer, unknown in zip(answers, nowhere, strict=True):
            assert (answer.status_code, answer.content) == (unknown.status_code, unknown.content)
            assert answer.status_code in (404, 405), answer.text  # the web inbox's mount at /
        assert webhook.status_code == 404, webhook.text
        assert me["features"] == {"sandbox": False}
        assert not [path for path in spec["paths"] if "/sandbox" in path]
        assert await _conversations(tenant) == []
