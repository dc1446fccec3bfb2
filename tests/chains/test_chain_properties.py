"""Property tests of pack chains (issue 13) over random histories and push sequences.

Each example is a fresh repository that hypothesis pushes to through the real API (new
branches, commits that change, delete and revert files, merges of other branches, force pushes,
branches never pushed again: the wire protocol cannot delete one), with rows expiring and
chains compacted (`compact_chain`, its bound lowered) between pushes. After each push the
prebuild's append runs for every target the prebuild would build (`build_targets`: the head
set, then each tip), with the prebuild's own functions (`musehub.services.top_ups`) and no
Temporal, against the real PostgreSQL and local storage. Then, for every current target's chain:

- its parts, decoded and applied in order, hold exactly the commits, snapshots and objects of
  the full synchronous plan (`plan_fetch(want, [])`), and each commit, snapshot and object is
  in one part only (a joined chain is one fresh base's size);
- for every position P of the chain, the suffix `chain.after(P)` sends the commits the
  synchronous path sends for `have = P`, and snapshots and objects of the want set's history
  that, with what the client at P holds, are all of it (see `check_suffix` for why they are not
  always the synchronous path's);
- the inline answer streamed from the parts (`joined_stream` with the INLINE header and the
  branch heads trailer) decodes to the full plan's bundle and the heads;
- a pull through the API whose `have` is a position gets exactly the suffix's parts, as a HIT;
- a top-up planned from what was pushed alone (`plan_quick_top_up`, which the prebuild's cache
  check builds itself) equals the plan that walks both histories.
"""

from __future__ import annotations

import asyncio
import io
import os
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context, event
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from musehub.contract import build_targets
from musehub.db.engine import session_factory
from musehub.mpack.chain import joined_size, joined_stream
from musehub.mpack.inline import INLINE_HEADER, branch_heads_trailer
from musehub.mpack.reader import read_mpack
from musehub.services import mpack_cache, top_ups
from musehub.services.blob_reads import storage_blob_reader
from musehub.services.chains import BaseChain, Chain
from musehub.services.compaction import compact_chain
from musehub.services.mpack_build import FetchPlan, assemble_mpack, plan_fetch, upload_mpack
from tests.chains.history import History
from tests.chains.rows import expire
from tests.conftest import Hub
from tests.wire.helpers import call, decode

# The chain's arithmetic over many random histories: 2.3x slower on S3 for nothing more, as the
# e2e and records tests of this folder read parts by range on both backends.
pytestmark = pytest.mark.local_storage_only("the chain's arithmetic, not storage")

Ids = dict[str, frozenset[str]]
KINDS = ("commits", "snapshots", "objects")

# Few files and few contents: a file often goes back to an older content, so an old object (and
# sometimes a whole old snapshot) reappears in a later push.
FILES = ("a", "b", "c")
CONTENTS = (b"zero", b"one", b"two")


# -- the model: branches of a History, pushed through the API ----------------------------------


@dataclass
class Repo:
    hub: Hub
    owner: str
    slug: str
    token: str
    repo_id: str = ""
    history: History = field(default_factory=History)
    files: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit -> its files
    parents: dict[str, list[str]] = field(default_factory=dict)
    heads: dict[str, str] = field(default_factory=dict)  # as the hub holds them
    active: list[str] = field(default_factory=list)  # branches still pushed to
    plans: dict[tuple[tuple[str, ...], tuple[str, ...]], Ids] = field(default_factory=dict)

    def commit(self, parents: list[str], files: dict[str, bytes]) -> str:
        files = files or {"a": CONTENTS[0]}  # never an empty tree
        commit = self.history.commit(parents, files)
        self.files[commit] = dict(files)
        self.parents[commit] = parents
        return commit

    def back(self, tip: str, steps: int) -> str:
        """`steps` first parents back from `tip` (as far as the history goes)."""
        for _ in range(steps):
            if not self.parents[tip]:
                break
            tip = self.parents[tip][0]
        return tip

    async def push(self, branch: str, tip: str, *, force: bool = False) -> None:
        pushed = await self.history.push(
            self.hub, self.owner, self.slug, self.token, branch, tip, force
        )
        self.repo_id = self.repo_id or (await refs(self))["repo_id"]
        self.heads[branch] = tip
        assert pushed["branch_heads"] == self.heads
        if branch not in self.active:
            self.active.append(branch)


async def refs(repo: Repo) -> dict[str, Any]:
    return decode(await call(repo.hub.client, repo.owner, repo.slug, "refs"))


def changed(files: Mapping[str, bytes], changes: Mapping[str, int | None]) -> dict[str, bytes]:
    out = dict(files)
    for path, content in changes.items():
        if content is None:
            out.pop(path, None)
        else:
            out[path] = CONTENTS[content]
    return out


changes_st = st.dictionaries(
    st.sampled_from(FILES), st.none() | st.integers(0, len(CONTENTS) - 1), max_size=3
)
ops_st = st.lists(
    st.one_of(
        st.tuples(st.just("commit"), st.integers(0, 7), changes_st),
        st.tuples(st.just("branch"), st.integers(0, 7), st.integers(0, 3), changes_st),
        st.tuples(st.just("merge"), st.integers(0, 7), st.integers(0, 7), changes_st),
        st.tuples(st.just("force"), st.integers(0, 7), st.integers(1, 3), changes_st),
        st.tuples(st.just("abandon"), st.integers(0, 7)),
        st.tuples(st.just("expire"), st.integers(0, 31)),
        st.tuples(st.just("compact"), st.integers(0, 31), st.integers(0, 2)),
    ),
    min_size=1,
    max_size=7,
)


async def apply(repo: Repo, op: tuple[Any, ...]) -> bool:
    """Run one step; True when it pushed."""
    kind, *args = op
    if kind == "expire":  # a row's TTL runs out (nobody cloned it): a chain disappears
        await expire_row(repo, args[0])
        return False
    if kind == "compact":  # CompactMPackChain's work on a row, its bound lowered to 2 parts
        await compact_row(repo, args[0], keep=args[1])
        return False
    if kind == "abandon":
        # The wire protocol cannot delete a branch: one never pushed again is the nearest thing
        # (its tip stays in the head set, its line of history stops growing).
        if len(repo.active) > 1:
            repo.active.pop(args[0] % len(repo.active))
        return False
    if kind == "branch":
        source = repo.heads[sorted(repo.heads)[args[0] % len(repo.heads)]]
        start = repo.back(source, args[1])
        name = f"b{len(repo.heads)}"
        # No changes: the new branch points at a commit the hub already holds.
        tip = repo.commit([start], changed(repo.files[start], args[2])) if args[2] else start
        await repo.push(name, tip)
        return True
    branch = repo.active[args[0] % len(repo.active)]
    tip = repo.heads[branch]
    if kind == "commit":
        await repo.push(branch, repo.commit([tip], changed(repo.files[tip], args[1])))
    elif kind == "merge":
        other = repo.heads[sorted(repo.heads)[args[1] % len(repo.heads)]]
        parents = [tip, other] if other != tip else [tip]
        files = changed({**repo.files[other], **repo.files[tip]}, args[2])
        await repo.push(branch, repo.commit(parents, files))
    else:  # force: the branch rewritten from an ancestor
        start = repo.back(tip, args[1])
        if start == tip:  # nothing to go back to: a new, unrelated history
            rewritten = repo.commit([], changed({}, args[2]))
        else:
            rewritten = repo.commit([start], changed(repo.files[start], args[2]))
        await repo.push(branch, rewritten, force=True)
    return True


async def live_want_sets(repo: Repo) -> list[list[str]]:
    """The want sets of the repo's live rows, in an order that does not depend on its id (so
    that hypothesis replays an example exactly)."""
    async with AsyncSession(repo.hub.engine) as session:
        rows = await session.scalars(
            text(
                "SELECT want_commit_ids FROM musehub_fetch_mpack_cache"
                " WHERE repo_id = :r AND expires_at > now() ORDER BY want_commit_ids"
            ),
            {"r": repo.repo_id},
        )
        return [list(want) for want in rows.all()]


async def expire_row(repo: Repo, pick: int) -> None:
    wants = await live_want_sets(repo)
    if wants:
        await expire(repo.hub, repo.repo_id, wants[pick % len(wants)])


async def compact_row(repo: Repo, pick: int, *, keep: int) -> None:
    wants = await live_want_sets(repo)
    if not wants:
        return
    hub = repo.hub
    limits = {"chain_compact_parts": 2, "chain_compact_ratio": 1e-9, "chain_keep_parts": keep}
    low = hub.settings.model_copy(update={"mpack": hub.settings.mpack.model_copy(update=limits)})
    result = await compact_chain(
        session_factory(hub.engine), hub.storage, low, repo.repo_id, wants[pick % len(wants)]
    )
    if result.parts_after < result.parts_before:
        note("a chain compacted")


# -- the prebuild, as its activities run it (check, plan, assemble, upload, record) ------------


async def prebuild(repo: Repo) -> None:
    hub = repo.hub
    for want in build_targets(list(repo.heads.values())):
        async with AsyncSession(hub.engine) as session:
            if await mpack_cache.lookup(session, repo.repo_id, want) is not None:
                continue  # "fresh": a live row already answers this want set
        async with AsyncSession(hub.engine) as session:
            plan, base_want = await top_ups.plan_top_up(
                session, repo.repo_id, want, compact_parts=hub.settings.mpack.chain_compact_parts
            )
            await check_quick_plan(session, repo, want, plan, base_want)
            handle, name = tempfile.mkstemp(dir=hub.settings.work_dir, suffix=".mpack")
            with os.fdopen(handle, "wb") as out:
                digest = await assemble_mpack(
                    session, plan, out, storage_blob_reader(hub.storage), concurrency=4
                )
        key = await upload_mpack(hub.storage, repo.repo_id, Path(name), digest, move=True)
        await asyncio.to_thread(Path(name).unlink, missing_ok=True)  # gone if moved
        async with AsyncSession(hub.engine) as session:
            await top_ups.record_held(session, repo.repo_id, key, plan)  # as the assemble step
            await top_ups.hold_stored(session, hub.storage, key, digest.size)
            await top_ups.record_top_up(
                session,
                hub.storage,
                repo_id=repo.repo_id,
                want=want,
                base_want=base_want,
                mpack_id=key,
                digest=digest,
                ttl=hub.settings.mpack_cache_ttl,
            )
            await session.commit()


async def check_quick_plan(
    session: AsyncSession, repo: Repo, want: list[str], plan: FetchPlan, base_want: list[str]
) -> None:
    """The top-up planned from what was pushed alone (the quick path, which skips the walk of
    the base's history) is exactly what walking both histories plans, whenever it answers."""
    quick = await top_ups.plan_quick_top_up(
        session, repo.repo_id, want, compact_parts=repo.hub.settings.mpack.chain_compact_parts
    )
    if quick is None:
        note("a top-up planned the long way" if base_want else "a base")
        return
    note("a top-up planned from what was pushed alone")
    assert quick == (plan, base_want)
    # The long way's plan, less what the base chain's parts hold (as both paths leave out).
    entry = await mpack_cache.lookup(session, repo.repo_id, base_want)
    assert entry is not None and entry.chain is not None
    full = await plan_fetch(session, repo.repo_id, want, base_want)
    assert plan == await top_ups.less_held(session, full, BaseChain(base_want, entry.chain, None))
    if plan != full:
        note("a top-up that leaves out records an older part holds")


# -- what the synchronous path and the chain hold -----------------------------------------------


async def planned(repo: Repo, want: list[str] | tuple[str, ...], have: list[str]) -> Ids:
    """The synchronous path's answer to (want, have), as sets (commits never change: kept)."""
    key = (tuple(sorted(want)), tuple(sorted(have)))
    if key not in repo.plans:
        async with AsyncSession(repo.hub.engine) as session:
            plan = await plan_fetch(session, repo.repo_id, list(want), list(have))
        repo.plans[key] = {
            "commits": frozenset(plan.commit_ids),
            "snapshots": frozenset(plan.snapshot_ids),
            "objects": frozenset(o.object_id for o in plan.objects),
        }
    return repo.plans[key]


def ids_of(pack: Any) -> Ids:
    return {
        "commits": frozenset(c["commit_id"] for c in pack.commits),
        "snapshots": frozenset(s["snapshot_id"] for s in pack.snapshots),
        "objects": frozenset(o["object_id"] for o in pack.objects),
    }


async def part_ids(hub: Hub, chain: Chain) -> list[Ids]:
    """Each part decoded on its own, in chain order."""
    found = []
    for part in chain.parts:
        data = await hub.storage.get(part.mpack_id)
        assert len(data) == part.size
        pack = read_mpack(io.BytesIO(data))
        assert [len(pack.commits), len(pack.snapshots), len(pack.objects)] == [
            s.count for s in part.sections
        ]
        found.append(ids_of(pack))
    return found


def union(parts: list[Ids]) -> Ids:
    return {k: frozenset().union(*(p[k] for p in parts)) for k in KINDS}


async def check_chain(repo: Repo, want: list[str]) -> None:
    hub = repo.hub
    async with AsyncSession(hub.engine) as session:
        entry = await mpack_cache.lookup(session, repo.repo_id, want)
    assert entry is not None and entry.chain is not None, f"no chain for {want}"
    chain = entry.chain
    full = await planned(repo, want, [])
    parts = await part_ids(hub, chain)
    note(f"parts={min(len(chain.parts), 4)}")
    if sorted(chain.parts[-1].want) != sorted(want):
        note("a row whose chain ends at another want set's position")

    # Applying the parts in order: exactly the full plan; no record sent twice (a top-up
    # leaves out what the parts before it hold), so the joined chain is one fresh base's size.
    assert union(parts) == full
    assert sum(len(p["commits"]) for p in parts) == len(full["commits"]) == chain.commit_count
    for kind in ("snapshots", "objects"):
        assert sum(len(p[kind]) for p in parts) == len(full[kind]), f"{kind} sent twice"

    # Every position's suffix against what the synchronous path sends for that `have`.
    for index, part in enumerate(chain.parts):
        position = list(part.want)
        suffix = chain.after(position)
        assert suffix is not None
        start = len(chain.parts) - len(suffix.parts)
        assert start > index  # after the furthest position `position` holds: this or later
        assert suffix.parts == chain.parts[start:]
        await check_suffix(repo, want, position, union(parts[start:]))
        if suffix.parts:
            await check_pull(repo, want, position, suffix)
    assert chain.after([*want, *chain.parts[-1].want]) == Chain(())

    # The inline answer streamed from the parts: the full bundle and the heads.
    heads = (await refs(repo))["branch_heads"]
    assert heads == repo.heads
    stored = [p.stored for p in chain.parts]
    trailer = branch_heads_trailer(heads)
    data = b"".join([c async for c in joined_stream(stored, read_range(hub), INLINE_HEADER)])
    data += trailer
    assert len(data) == joined_size(stored, INLINE_HEADER) + len(trailer)
    inline = read_mpack(io.BytesIO(data))
    assert ids_of(inline) == full
    assert inline.branch_heads == heads


async def check_suffix(repo: Repo, want: list[str], position: list[str], suffix: Ids) -> None:
    """The suffix after `position` against the synchronous answer to `have = position`.

    Commits are equal. Snapshots and objects are not always: the synchronous answer leaves
    out what the position's edge (its boundary snapshots) holds; a top-up leaves out what the
    parts before it hold, which is the whole history of the previous position. So a record the
    client at P holds from deeper in its history (a file, or the whole tree, reverted to older
    content after P) is sent by the synchronous path and left out by the suffix, and one the
    position's edge held but a later top-up's does not is left out by both. What matters
    holds: the suffix sends nothing outside the want set's history, and with what the client
    at P holds it is the whole of it, never missing a record."""
    sync = await planned(repo, want, position)
    held = await planned(repo, position, [])  # what a client at P holds
    full = await planned(repo, want, [])
    assert suffix["commits"] == sync["commits"]
    if suffix["snapshots"] != sync["snapshots"]:
        note("a suffix leaves out a snapshot the synchronous answer sends")
    if suffix["objects"] != sync["objects"]:
        note("a suffix leaves out an object the synchronous answer sends")
    for kind in ("snapshots", "objects"):
        assert suffix[kind] <= full[kind], kind
        assert suffix[kind] | held[kind] == full[kind], kind


async def check_pull(repo: Repo, want: list[str], have: list[str], suffix: Chain) -> None:
    """A pull through the API from `have`: the suffix's parts, in order, as a hit."""
    body = {"want": want, "have": have, "capabilities": ["mpack-chain"]}
    response = await call(repo.hub.client, repo.owner, repo.slug, "fetch", body)
    assert response.headers["x-musehub-cache"] == "HIT", (want, have)
    answer = decode(response)
    assert [p["sha256"] for p in answer["mpack_parts"]] == [p.sha256 for p in suffix.parts]


def note(what: str) -> None:
    """Counted in `--hypothesis-show-statistics`, to see the examples reach the cases."""
    if currently_in_test_context():
        event(what)


def read_range(hub: Hub) -> Any:
    async def read(key: str, start: int, end: int) -> AsyncIterator[bytes]:
        async for chunk in hub.storage.stream(key, start=start, end=end):
            yield chunk

    return read


# -- the properties -------------------------------------------------------------------------------


@settings(
    # About 0.7 s an example on 2 cores; MUSEHUB_CHAIN_PROPERTY_EXAMPLES=300 for a longer hunt.
    max_examples=int(os.environ.get("MUSEHUB_CHAIN_PROPERTY_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(ops=ops_st)
async def test_chains_answer_like_the_synchronous_path(hub: Hub, ops: list[Any]) -> None:
    owner, slug, token = await hub.create_repo()
    repo = Repo(hub, owner, slug, token)
    await repo.push("main", repo.commit([], {"a": CONTENTS[0], "b": CONTENTS[1]}))
    await prebuild(repo)
    for want in build_targets(list(repo.heads.values())):
        await check_chain(repo, want)
    for op in ops:
        if not await apply(repo, op):
            continue
        await prebuild(repo)
        for want in build_targets(list(repo.heads.values())):
            await check_chain(repo, want)


async def test_a_pull_from_a_position_hits_and_from_elsewhere_is_uncached(hub: Hub) -> None:
    owner, slug, token = await hub.create_repo()
    repo = Repo(hub, owner, slug, token)
    first = repo.commit([], {"a": CONTENTS[0]})
    await repo.push("main", first)
    await prebuild(repo)
    second = repo.commit([first], {"a": CONTENTS[1]})
    await repo.push("main", second)
    await prebuild(repo)
    third = repo.commit([second], {"a": CONTENTS[0], "b": CONTENTS[2]})  # "a" reverted
    await repo.push("main", third)
    await prebuild(repo)
    async with AsyncSession(hub.engine) as session:
        entry = await mpack_cache.lookup(session, repo.repo_id, [third])
    assert entry is not None and entry.chain is not None
    chain = entry.chain
    assert [p.want for p in chain.parts] == [(first,), (second,), (third,)]

    for have, expected in (([first], chain.parts[1:]), ([second], chain.parts[2:])):
        body = {"want": [third], "have": have, "capabilities": ["mpack-chain"]}
        response = await call(hub.client, owner, slug, "fetch", body)
        assert response.headers["x-musehub-cache"] == "HIT"
        assert [p["sha256"] for p in decode(response)["mpack_parts"]] == [
            p.sha256 for p in expected
        ]
    # A have that also holds commits beyond a position still gets the suffix after it.
    body = {"want": [third], "have": [first, "f" * 64], "capabilities": ["mpack-chain"]}
    response = await call(hub.client, owner, slug, "fetch", body)
    assert response.headers["x-musehub-cache"] == "HIT"

    # A have that holds no position (a commit of another line of history): built, UNCACHED.
    other = repo.commit([], {"c": CONTENTS[2]})
    await repo.push("other", other)
    body = {"want": [third], "have": [other], "capabilities": ["mpack-chain"]}
    response = await call(hub.client, owner, slug, "fetch", body)
    assert response.headers["x-musehub-cache"] == "UNCACHED"
    pack = msgpack.unpackb(await download(hub, decode(response)), raw=False)
    assert {c["commit_id"] for c in pack["commits"]} == {first, second, third}


async def download(hub: Hub, answer: dict[str, Any]) -> bytes:
    url = answer["mpack_parts"][0]["url"] if answer.get("mpack_parts") else answer["mpack_url"]
    response = await hub.client.get(url.removeprefix(hub.settings.public_base_url))
    assert response.status_code == 200
    return response.content


async def test_a_tree_reverted_after_a_position_is_not_sent_again(hub: Hub) -> None:
    """The whole tree goes back, two pushes after P, to P's tree. The last top-up's boundary
    (the push before it) does not hold that snapshot or the reverted object, but the base part
    does: the top-up leaves them out (`top_ups.less_held`), so the suffix after P sends exactly
    what the synchronous answer to `have = P` sends, and the chain holds each record once."""
    owner, slug, token = await hub.create_repo()
    repo = Repo(hub, owner, slug, token)
    tree = {"a": CONTENTS[0], "b": CONTENTS[1]}
    first = repo.commit([], tree)
    await repo.push("main", first)
    await prebuild(repo)
    second = repo.commit([first], {"b": CONTENTS[1]})
    await repo.push("main", second)
    await prebuild(repo)
    third = repo.commit([second], tree)  # back to the first tree
    await repo.push("main", third)
    await prebuild(repo)
    await check_chain(repo, [third])

    async with AsyncSession(hub.engine) as session:
        entry = await mpack_cache.lookup(session, repo.repo_id, [third])
    assert entry is not None and entry.chain is not None
    suffix = entry.chain.after([first])
    assert suffix is not None and len(suffix.parts) == 2
    parts = await part_ids(hub, suffix)
    sync = await planned(repo, [third], [first])
    assert union(parts) == sync
    assert sync["commits"] == {second, third}
    last = parts[-1]
    assert last["commits"] == {third} and not last["snapshots"] and not last["objects"]
