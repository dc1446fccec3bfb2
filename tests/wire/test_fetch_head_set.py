"""`mpack-refs`: a clone (or a pull, with its `have`) asks for every branch head with an empty
`want` and gets the refs in the answer, one round trip instead of `GET /refs` then `POST /fetch`.
The refs are those of the packs in the same answer; everything else about the answer is what the
heads' own `want` (and `have`) gets."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from musehub.client.clone import clone
from musehub.services.fetch import FetchMPacks
from tests.conftest import Hub
from tests.mpack.helpers import VECTOR_HEADS, load_vector
from tests.wire.helpers import build_reading_slowly, call, decode, push_vector, push_vector_branch

MAIN, CHORUS = VECTOR_HEADS["main"], VECTOR_HEADS["chorus"]
CLONE_CAPS = ["mpack-chain", "mpack-url", "mpack-zstd"]
REFS_FIELDS = ("repo_id", "domain", "default_branch", "branch_heads")


async def head_set(
    hub: Hub, owner: str, slug: str, caps: list[str], token: str | None = None, **body: Any
) -> Any:
    asked = {"want": [], "have": [], "capabilities": [*caps, "mpack-refs"], **body}
    return await call(hub.client, owner, slug, "fetch", asked, token)


def without_urls(answer: dict[str, Any], leave_out: tuple[str, ...]) -> dict[str, Any]:
    """An answer's fields but `leave_out`, its URLs left out: each presign signs anew."""
    kept = {k: v for k, v in answer.items() if k not in (*leave_out, "mpack_url")}
    if "mpack_parts" in kept:
        kept["mpack_parts"] = [
            {k: v for k, v in p.items() if k != "url"} for p in kept["mpack_parts"]
        ]
    return kept


@pytest.mark.parametrize("caps", [CLONE_CAPS, ["mpack-url"], ["mpack-chain", "mpack-url"]])
async def test_the_head_set_answer_is_the_heads_answer_plus_the_refs(
    hub: Hub, caps: list[str]
) -> None:
    repo = await push_vector(hub, branches=("main", "chorus"))
    together = await head_set(hub, repo.owner, repo.slug, caps)
    answer = decode(together)
    refs = decode(await call(hub.client, repo.owner, repo.slug, "refs"))
    assert {k: answer[k] for k in REFS_FIELDS} == refs
    assert refs["branch_heads"] == {"main": MAIN, "chorus": CHORUS}
    asked = {"want": [CHORUS, MAIN], "have": [], "capabilities": caps}
    alone = decode(await call(hub.client, repo.owner, repo.slug, "fetch", asked))
    assert without_urls(answer, REFS_FIELDS) == without_urls(alone, ("branch_heads",))
    assert together.headers["x-musehub-cache"] in ("HIT", "MISS")


async def test_a_repo_without_branches_answers_its_refs_and_no_pack(hub: Hub) -> None:
    owner, slug, _ = await hub.create_repo()
    answer = decode(await head_set(hub, owner, slug, CLONE_CAPS))
    assert answer["branch_heads"] == {} and set(answer) == set(REFS_FIELDS)


async def test_a_private_repo_is_not_found_for_a_stranger_and_answered_for_its_owner(
    hub: Hub,
) -> None:
    repo = await push_vector(hub, private=True)
    stranger = await head_set(hub, repo.owner, repo.slug, CLONE_CAPS)
    assert stranger.status_code == 404
    owner = decode(await head_set(hub, repo.owner, repo.slug, CLONE_CAPS, repo.token))
    assert owner["repo_id"] == repo.repo_id and owner["branch_heads"] == {"main": MAIN}


async def test_a_pull_gets_what_its_have_lacks_of_the_heads_with_the_refs(hub: Hub) -> None:
    """A pull sends its tips as `have`: the answer is the one the heads' own want with that
    `have` gets, plus the refs."""
    repo = await push_vector(hub, branches=("main", "chorus"))
    together = await head_set(hub, repo.owner, repo.slug, CLONE_CAPS, have=[CHORUS])
    answer = decode(together)
    assert answer["branch_heads"] == {"main": MAIN, "chorus": CHORUS}
    asked = {"want": [CHORUS, MAIN], "have": [CHORUS], "capabilities": CLONE_CAPS}
    alone = decode(await call(hub.client, repo.owner, repo.slug, "fetch", asked))
    # Built for each request (no chain position in `have`): each presigned anew.
    signed = ("expires_at",)
    assert without_urls(answer, (*REFS_FIELDS, *signed)) == without_urls(
        alone, ("branch_heads", *signed)
    )
    everything = decode(await head_set(hub, repo.owner, repo.slug, CLONE_CAPS))
    assert answer["mpack_size"] < everything["mpack_size"]  # not the whole history again


async def test_a_pull_that_has_every_head_gets_the_refs_alone(hub: Hub) -> None:
    repo = await push_vector(hub, branches=("main", "chorus"))
    answer = decode(await head_set(hub, repo.owner, repo.slug, CLONE_CAPS, have=[MAIN, CHORUS]))
    assert set(answer) == set(REFS_FIELDS) and answer["branch_heads"]["main"] == MAIN


async def test_an_empty_want_in_the_inline_form_is_refused(hub: Hub) -> None:
    """The inline form has no room for the refs."""
    repo = await push_vector(hub)
    refused = await head_set(hub, repo.owner, repo.slug, [])
    assert refused.status_code == 400 and "mpack-url or mpack-chain" in refused.text


async def test_an_empty_want_without_the_capability_is_refused_as_before(hub: Hub) -> None:
    repo = await push_vector(hub)
    asked = {"want": [], "have": [], "capabilities": CLONE_CAPS}
    refused = await call(hub.client, repo.owner, repo.slug, "fetch", asked)
    assert refused.status_code == 400 and "'want' must not be empty" in refused.text


async def test_a_push_through_this_process_is_seen_by_the_next_head_set_answer(hub: Hub) -> None:
    """The refs are kept for a second per repo: a push must not leave them naming old heads."""
    repo = await push_vector(hub, branches=("main",))
    before = decode(await head_set(hub, repo.owner, repo.slug, CLONE_CAPS))
    assert before["branch_heads"] == {"main": MAIN}
    await push_vector_branch(hub, repo.owner, repo.slug, repo.token, "chorus")
    after = decode(await head_set(hub, repo.owner, repo.slug, CLONE_CAPS))
    assert after["branch_heads"] == {"main": MAIN, "chorus": CHORUS}
    # Main's head merges chorus, so the packs may be the very same ones: they must be what the
    # new heads' own want gets.
    asked = {"want": [CHORUS, MAIN], "have": [], "capabilities": CLONE_CAPS}
    alone = decode(await call(hub.client, repo.owner, repo.slug, "fetch", asked))
    assert without_urls(after, REFS_FIELDS) == without_urls(alone, ("branch_heads",))


class Recording(httpx.AsyncBaseTransport):
    """The hub's own transport, with the requests a client sent and whether each answer had a
    length (a streamed build has none)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.seen: list[tuple[str, str, bool]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        op = request.url.path.rsplit("/", 1)[-1]
        self.seen.append((request.method, op, "content-length" in response.headers))
        return response


async def test_a_clone_while_the_pack_is_built_falls_back_and_gets_every_file(
    hub: Hub, tmp_path: Path
) -> None:
    """A cold head set whose build runs long is streamed inline, without the refs: the client
    leaves that answer unread and asks the old way (`GET /refs`, then the heads)."""
    repo = await push_vector(hub, branches=("main", "chorus"))
    fetcher: FetchMPacks = hub.app.state.parts.fetch
    real_build = fetcher.builds.build
    fetcher.builds.build = build_reading_slowly(hub, 0.4)
    transport = Recording(hub.transport)
    url = f"http://hub.test/{repo.owner}/{repo.slug}"
    try:
        result = await clone(url, tmp_path / "song", transport=transport, progress=False)
        async with asyncio.timeout(30):
            await asyncio.gather(*fetcher.builds.streamed)
    finally:
        fetcher.builds.build = real_build
    # The head set, streamed while it builds (no length, no refs), then the old way. (The test
    # transport reads a whole answer before the client sees it, so the heads' fetch may find the
    # pack recorded by then, and answer by URL.)
    assert [(method, op) for method, op, _ in transport.seen[:3]] == [
        ("POST", "fetch"),
        ("GET", "refs"),
        ("POST", "fetch"),
    ]
    assert transport.seen[0][2] is False
    assert result.head_commit_id == MAIN and result.commits == len(load_vector()["commits"])
    muse = tmp_path / "song" / ".muse"
    assert (muse / "refs" / "heads" / "chorus").read_text() == CHORUS
