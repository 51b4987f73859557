"""U+0000 in input: PostgreSQL text can not hold it, so it must never reach a query.

The REST API refuses it with 400 INVALID_INPUT (it used to be a 500 on PostgreSQL and stored as
is on SQLite); a gateway's webhook keeps the message and drops the character, since a gateway
would retry a 500 forever and does not resend a 400.
"""

from __future__ import annotations

from tests.harness import Tenant

PHONE = "5511987650000"


async def test_rest_input_with_nul_is_400_and_changes_nothing(tenant: Tenant) -> None:
    async with tenant.http() as http:
        answers = [
            await http.get(
                "/api/v1/conversations", params={"search": "a\x00b"}, headers=tenant.auth()
            ),
            await http.post("/api/v1/auth/login", json={"email": "a\x00@b.c", "password": "x"}),
            await http.post(
                f"/api/tenants/{tenant.id}/chat/send",
                json={"phone_number": PHONE, "text": "oi\x00"},
                headers=tenant.auth(),
            ),
            await http.post(
                "/api/v1/sandbox/messages",
                json={"from": PHONE, "text": "oi", "push_name": "Ma\x00ria"},
                headers=tenant.auth(),
            ),
        ]
        listed = await http.get("/api/v1/conversations", headers=tenant.auth())
    for answer in answers:
        assert answer.status_code == 400, answer.text
        assert answer.json()["error_code"] == "INVALID_INPUT"
    assert listed.json() == []


async def test_webhook_text_with_nul_is_kept_without_it(tenant: Tenant) -> None:
    answer = await tenant.customer_says("olá\x00 mundo", phone=PHONE, push_name="Ma\x00ria")
    assert answer.status_code == 200, answer.text
    assert answer.json()["stored"] == 1
    async with tenant.http() as http:
        conv = (await http.get("/api/v1/conversations", headers=tenant.auth())).json()[0]
        messages = (
            await http.get(f"/api/v1/conversations/{conv['id']}/messages", headers=tenant.auth())
        ).json()
    assert [m["content"]["text"] for m in messages] == ["olá mundo"]
    assert messages[0]["push_name"] == "Maria"
