"""Self-service profile, export and deletion; users never reach each other's data."""

from __future__ import annotations

import uuid

from .conftest import PASSWORD, Harness

ME = "/api/v1/users/me"


async def test_read_and_update_own_profile(harness: Harness) -> None:
    user = await harness.user()
    updated = await user.request("PATCH", ME, json={"full_name": "Ada Lovelace"})
    assert updated.status_code == 200
    assert updated.json()["full_name"] == "Ada Lovelace"
    assert (await user.get(ME)).json()["full_name"] == "Ada Lovelace"


async def test_profile_update_cannot_raise_privileges(harness: Harness) -> None:
    user = await harness.user()
    for body in (
        {"roles": ["admin"]},
        {"is_active": True},
        {"email": "new@example.com"},
        {"id": str(uuid.uuid4())},
        {"password_hash": "x"},
        {"full_name": "ok", "permissions": ["users:read"]},
    ):
        response = await user.request("PATCH", ME, json=body)
        assert response.status_code == 422, body
    me = (await user.get(ME)).json()
    assert me["roles"] == ["user"]
    assert (await user.get("/api/v1/users")).status_code == 403


async def test_users_cannot_reach_each_other(harness: Harness) -> None:
    alice = await harness.user()
    bob = await harness.user()
    assert (await alice.get(f"/api/v1/users/{bob.id}")).status_code == 403
    assert (
        await alice.request("PATCH", f"/api/v1/users/{bob.id}", json={"full_name": "x"})
    ).status_code == 403
    assert (await alice.get(ME)).json()["id"] == alice.id
    admin = await harness.user("admin")
    assert (await admin.get(f"/api/v1/users/{uuid.uuid4()}")).status_code == 404


async def test_export_contains_everything_about_me_and_nothing_else(harness: Harness) -> None:
    user = await harness.user()
    other = await harness.user()
    response = await user.get(f"{ME}/export")
    assert response.status_code == 200
    assert "attachment" in response.headers["content-disposition"]
    export = response.json()
    assert export["user"]["email"] == user.email
    assert "account:export" in export["permissions"]
    assert len(export["sessions"]) == 1
    assert {event["action"] for event in export["audit_events"]} >= {
        "user.registered",
        "auth.login",
    }
    assert other.email not in response.text
    assert "password" not in response.text


async def test_account_deletion_requires_the_password_and_erases_the_account(
    harness: Harness,
) -> None:
    user = await harness.user()
    wrong = await user.request("DELETE", ME, json={"password": "not-it-at-all"})
    assert wrong.status_code == 401
    deleted = await user.request("DELETE", ME, json={"password": PASSWORD})
    assert deleted.status_code == 204
    assert (await user.get(ME)).status_code == 401
    login = await harness.client.post(
        "/api/v1/auth/login", json={"email": user.email, "password": PASSWORD}
    )
    assert login.status_code == 401
    again = await harness.client.post(
        "/api/v1/auth/register", json={"email": user.email, "password": PASSWORD}
    )
    assert again.status_code == 201


async def test_last_admin_cannot_delete_their_account(harness: Harness) -> None:
    admin = await harness.user("admin")
    response = await admin.request("DELETE", ME, json={"password": PASSWORD})
    assert response.status_code == 409
