"""Nobody reads or writes what they should not: private packs stay private even when cached,
objects of one repo cannot be borrowed by another, revoked tokens stop working."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from musehub.services.tokens import revoke_token, token_id_of
from tests.conftest import Hub
from tests.mpack.helpers import VECTOR_HEADS, load_vector
from tests.wire.helpers import call, decode, push_records, push_vector

VECTOR = load_vector()
MAIN = VECTOR_HEADS["main"]
CLONE = {"want": [MAIN], "have": [], "capabilities": ["mpack-url"]}


async def test_a_cached_private_pack_is_not_served_to_a_stranger(hub: Hub) -> None:
    owner, slug, token, _ = await push_vector(hub, private=True)
    warm = await call(hub.client, owner, slug, "fetch", CLONE, token)
    assert warm.status_code == 200  # the owner's clone fills the cache
    assert (await call(hub.client, owner, slug, "fetch", CLONE, token)).headers[
        "x-musehub-cache"
    ] == "HIT"
    _, _, stranger = await hub.create_repo()
    for who in (None, stranger):
        denied = await call(hub.client, owner, slug, "fetch", CLONE, who)
        assert denied.status_code == 404
        assert "mpack" not in denied.text


async def test_a_push_cannot_borrow_another_repos_objects(hub: Hub) -> None:
    await push_vector(hub, private=True)
    thief, thief_slug, thief_token = await hub.create_repo()
    missing = decode(
        await call(
            hub.client,
            thief,
            thief_slug,
            "filter-objects",
            {"object_ids": [o["object_id"] for o in VECTOR["objects"]]},
            thief_token,
        )
    )["missing"]
    assert len(missing) == len(VECTOR["objects"])  # nothing of the private repo shows through
    response = await push_records(
        hub.client,
        thief,
        thief_slug,
        thief_token,
        branch="main",
        tip=MAIN,
        commits=VECTOR["commits"],
        snapshots=VECTOR["snapshots"],
        objects=[],
    )
    assert response.status_code == 400
    assert "never uploaded" in response.text


async def test_presigned_upload_urls_only_for_the_owner(hub: Hub) -> None:
    owner, slug, _ = await hub.create_repo()
    response = await call(
        hub.client, owner, slug, "presign", {"object_ids": ["a" * 64], "direction": "put"}
    )
    assert response.status_code == 401


async def test_a_revoked_token_no_longer_works(hub: Hub) -> None:
    owner, slug, token = await hub.create_repo(private=True)
    assert (await call(hub.client, owner, slug, "refs", token=token)).status_code == 200
    token_id = token_id_of(token)
    assert token_id is not None
    async with AsyncSession(hub.engine) as session:
        assert await revoke_token(session, token_id)
        await session.commit()
    response = await call(hub.client, owner, slug, "refs", token=token)
    assert response.status_code == 401
    assert "revoked" in response.text


async def test_a_tampered_token_secret_is_refused(hub: Hub) -> None:
    owner, slug, token = await hub.create_repo(private=True)
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert (await call(hub.client, owner, slug, "refs", token=tampered)).status_code == 401
