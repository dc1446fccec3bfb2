"""The client against the real stack (API, PostgreSQL, Temporal worker, local storage): clones
from a pack chain equal one-pack clones, pulls are answered from the chain, and a part whose
bytes are corrupt in storage fails the clone cleanly (issue 13)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import msgpack
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from musehub.client.clone import clone
from musehub.client.errors import CloneError
from musehub.client.pull import pull
from tests.chains.history import History
from tests.chains.test_chain_e2e import chain_of
from tests.client.test_chain_clone import tree
from tests.client.test_pull import files_of, work_tree
from tests.prebuild.conftest import PrebuildHub, prebuild_hub
from tests.wire.helpers import PushedRepo, call, decode
from tests.wire.test_refs_changes import AT_ONCE_S, heads, within

__all__ = ["prebuild_hub"]  # the fixture, re-exported so pytest finds it here

BLOB = 50_000


class Recording(httpx.AsyncBaseTransport):
    """The hub's transport; keeps each `/fetch` answer's cache header, and can ask the hub for
    one pack instead of a chain (to clone the same history both ways)."""

    def __init__(self, hub: PrebuildHub, *, one_pack: bool = False) -> None:
        self._inner = hub.transport  # the app, and the storage's URLs on either backend
        self._one_pack = one_pack
        self.caches: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        fetch = request.url.path.endswith("/fetch")
        if fetch and self._one_pack:
            body = msgpack.unpackb(request.content, raw=False)
            body["capabilities"] = ["mpack-url"]
            content = msgpack.packb(body, use_bin_type=True)
            headers = {k: v for k, v in request.headers.items() if k != "content-length"}
            request = httpx.Request(request.method, request.url, headers=headers, content=content)
        response = await self._inner.handle_async_request(request)
        if fetch:
            self.caches.append(response.headers.get("x-musehub-cache", ""))
        return response


class Line:
    """`main` of a repository on the hub, pushed one commit at a time."""

    def __init__(self, hub: PrebuildHub, owner: str, slug: str, token: str) -> None:
        self.hub, self.owner, self.slug, self.token = hub, owner, slug, token
        self.history = History()
        self.files = {f"song/{n}.mid": bytes([n]) * BLOB for n in range(6)}
        self.tip = ""
        self.repo_id = ""

    async def push(self, change: str, *, parent: str | None = None, force: bool = False) -> str:
        """Push one commit changing one file; wait until its chain is recorded."""
        base = self.tip if parent is None else parent
        self.files = {**self.files, f"{change}.txt": change.encode() * 1000}
        self.tip = self.history.commit([base] if base else [], self.files, message=change)
        await self.history.push(
            self.hub, self.owner, self.slug, self.token, "main", self.tip, force=force
        )
        if not self.repo_id:
            refs = decode(await call(self.hub.client, self.owner, self.slug, "refs"))
            self.repo_id = refs["repo_id"]
        await chain_of(self.hub, self.repo_id, [self.tip])
        return self.tip


async def test_clone_from_a_chain_then_pull_from_it(
    prebuild_hub: PrebuildHub, tmp_path: Path
) -> None:
    hub = prebuild_hub
    owner, slug, token = await hub.create_repo()
    url = f"http://hub.test/{owner}/{slug}"
    line = Line(hub, owner, slug, token)
    for change in ("base", "one", "two"):
        await line.push(change)

    # A clone from the chain (base + 2 top-ups) holds what a one-pack clone holds, file for file.
    chained = Recording(hub)
    result = await clone(url, tmp_path / "chain", transport=chained, progress=False)
    assert result.parts == 3 and result.commits == 3
    await clone(url, tmp_path / "one", transport=Recording(hub, one_pack=True), progress=False)
    assert tree(tmp_path / "chain") == tree(tmp_path / "one")
    assert work_tree(tmp_path / "chain") == files_of(line.history, line.tip)

    # A pull after one push, then after several: the rest of the chain, as hits.
    root = tmp_path / "chain"
    for pushes in (1, 3):
        for n in range(pushes):
            await line.push(f"more-{pushes}-{n}")
        recorder = Recording(hub)
        pulled = await pull(root, transport=recorder, progress=False)
        assert recorder.caches == ["HIT"]
        assert (pulled.outcome, pulled.new_head) == ("fast-forward", line.tip)
        assert pulled.counts.commits == pushes and pulled.parts >= 1
        assert work_tree(root) == files_of(line.history, line.tip)

    # A force push (history rewritten from the first commit): the branch follows it.
    first = next(iter(line.history.commits))
    line.files = {f"song/{n}.mid": bytes([n + 50]) * BLOB for n in range(3)}
    await line.push("rewritten", parent=first, force=True)
    pulled = await pull(root, transport=Recording(hub), progress=False)
    assert (pulled.outcome, pulled.new_head) == ("reset", line.tip)
    assert work_tree(root) == files_of(line.history, line.tip)

    # A branch appears, then is deleted: its tracking pointer comes, then goes.
    dev = line.history.commit([line.tip], {**line.files, "dev.txt": b"dev"})
    await line.history.push(hub, owner, slug, token, "dev", dev)
    pulled = await pull(root, transport=Recording(hub), progress=False)
    assert (root / ".muse" / "remotes" / "origin" / "dev").read_text() == dev
    async with AsyncSession(hub.engine) as session:  # the wire protocol has no branch delete
        await session.execute(
            text("DELETE FROM musehub_branches WHERE repo_id = :r AND name = 'dev'"),
            {"r": line.repo_id},
        )
        await session.commit()
    # Heard by the hub within milliseconds (its kept refs are forgotten): then pulled.
    pushed = PushedRepo(owner, slug, token, line.repo_id)
    assert await within(AT_ONCE_S, lambda: heads(hub, pushed), {"main": line.tip}) == {
        "main": line.tip
    }
    pulled = await pull(root, transport=Recording(hub), progress=False)
    assert pulled.pruned == ("dev",) and pulled.outcome == "up to date"
    assert not (root / ".muse" / "remotes" / "origin" / "dev").exists()
    assert work_tree(root) == files_of(line.history, line.tip)  # main untouched


async def test_a_corrupt_part_in_storage_fails_the_clone_cleanly(
    prebuild_hub: PrebuildHub, tmp_path: Path
) -> None:
    hub = prebuild_hub
    owner, slug, token = await hub.create_repo()
    line = Line(hub, owner, slug, token)
    for change in ("base", "one"):
        await line.push(change)
    chain = await chain_of(hub, line.repo_id, [line.tip])
    top_up = chain.parts[-1]
    data = bytearray(await hub.storage.get(top_up.mpack_id))
    data[len(data) // 2] ^= 0xFF  # same size: only the sha256 can tell
    await hub.storage.put(top_up.mpack_id, bytes(data))
    dest = tmp_path / "song"
    # The raw parts: the prebuild may have made the top-up's zstd copy before the corruption.
    with pytest.raises(CloneError, match=r"sha256|corrupt"):
        await clone(f"http://hub.test/{owner}/{slug}", dest, transport=Recording(hub), zstd=False)
    assert (
        not dest.exists() and list(await asyncio.to_thread(lambda: list(tmp_path.iterdir()))) == []
    )
