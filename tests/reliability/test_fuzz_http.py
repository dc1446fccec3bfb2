"""Arbitrary bodies at every wire endpoint, over real HTTP: never a 500, always a readable
answer. Hypothesis drives a live uvicorn server against the test PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from api.app import create_app
from musehub.services.repos import create_repo
from musehub.services.tokens import create_token
from musehub.settings import Settings
from tests.storage.http_server import serving

OPS = ["refs", "filter-objects", "presign", "push/objects", "push", "negotiate", "fetch"]
FIELDS = [
    "want",
    "have",
    "object_ids",
    "objects",
    "bundle",
    "branch",
    "force",
    "capabilities",
    "direction",
    "commits",
    "snapshots",
    "object_id",
    "content",
    "manifest",
]
ID = "a" * 64

leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=70)
    | st.binary(max_size=70)
    | st.sampled_from([ID, "A" * 64])
)
values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)
shaped = st.dictionaries(st.sampled_from(FIELDS), values, max_size=5)
bodies = (
    st.binary(max_size=300)
    | values.map(lambda v: msgpack.packb(v, use_bin_type=True))
    | shaped.map(lambda v: msgpack.packb(v, use_bin_type=True))
)


@pytest.fixture(scope="module")
def live_hub(
    hub_settings: Settings, postgres_server_url: str, db_engine: Any
) -> Iterator[tuple[str, str]]:
    async def owner_and_token() -> tuple[str, str]:
        engine = create_async_engine(postgres_server_url)
        async with AsyncSession(engine) as session:
            await create_repo(session, "fuzzer", "target")
            token = await create_token(session, "fuzzer")
            await session.commit()
        await engine.dispose()
        return "fuzzer/target", token

    settings = hub_settings.model_copy(
        update={"database": hub_settings.database.model_copy(update={"url": postgres_server_url})}
    )
    repo, token = asyncio.run(owner_and_token())
    with serving(create_app(settings), lifespan="on") as base_url:
        yield f"{base_url}/{repo}", token


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    # One client for every example: `httpx.post` makes a client, and loads CA certificates,
    # per call (most of this test's time).
    with httpx.Client(timeout=30) as client:
        yield client


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(op=st.sampled_from(OPS), body=bodies, with_token=st.booleans())
def test_no_body_makes_a_500(
    live_hub: tuple[str, str], http: httpx.Client, op: str, body: bytes, with_token: bool
) -> None:
    url, token = live_hub
    headers = {"Content-Type": "application/x-msgpack"}
    if with_token:
        headers["Authorization"] = f"Bearer {token}"
    response = http.post(f"{url}/{op}", content=body, headers=headers)
    assert response.status_code < 500, (op, body, response.status_code, response.text)
    if response.status_code >= 400:
        assert response.text.strip(), "an error must say what went wrong"
