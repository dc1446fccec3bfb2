"""The operator API: off unless MUSEHUB_API_ADMIN_TOKEN is set; creates repos and tokens."""

from __future__ import annotations

import uuid

from pydantic import SecretStr

from tests.conftest import Hub
from tests.wire.helpers import call, decode

ADMIN = "operator-secret-123"


async def test_operator_api_is_off_without_an_admin_token(hub: Hub) -> None:
    response = await hub.client.post("/api/repos", json={"owner": "a", "slug": "b"})
    assert response.status_code == 403
    assert "MUSEHUB_API_ADMIN_TOKEN" in response.text


async def test_operator_creates_a_repo_and_a_token_that_pushes(hub: Hub) -> None:
    hub.settings.api.admin_token = SecretStr(ADMIN)
    try:
        auth = {"Authorization": f"Bearer {ADMIN}"}
        owner = f"op{uuid.uuid4().hex[:8]}"
        wrong = await hub.client.post(
            "/api/repos",
            json={"owner": owner, "slug": "x"},
            headers={"Authorization": "Bearer nope"},
        )
        assert wrong.status_code == 401
        created = await hub.client.post(
            "/api/repos", headers=auth, json={"owner": owner, "slug": "song", "private": True}
        )
        assert created.status_code == 201
        assert created.json()["visibility"] == "private"
        again = await hub.client.post(
            "/api/repos", headers=auth, json={"owner": owner, "slug": "song"}
        )
        assert again.status_code == 409
        assert "already exists" in again.text
        bad = await hub.client.post(
            "/api/repos", headers=auth, json={"owner": owner, "slug": "../x"}
        )
        assert bad.status_code == 400
        token = (await hub.client.post("/api/tokens", headers=auth, json={"user": owner})).json()[
            "token"
        ]
    finally:
        hub.settings.api.admin_token = None
    assert decode(await call(hub.client, owner, "song", "refs", token=token))["branch_heads"] == {}
    answer = decode(
        await call(hub.client, owner, "song", "filter-objects", {"object_ids": ["a" * 64]}, token)
    )
    assert answer == {"missing": ["a" * 64]}
