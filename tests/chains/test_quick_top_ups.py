"""A push's top-up planned from what was pushed alone, built by the prebuild's cache check; a
forced rebuild makes a new base; a pull answered from the clone's recent answer (issue 13)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.testing import ActivityEnvironment

from activities.prebuild import PrebuildActivities
from musehub.contract import BuildStepInput, CheckCacheInput, RecordCacheInput, UploadInput
from musehub.db.engine import session_factory
from musehub.services import chains, mpack_cache, staging, top_ups
from musehub.services.fetch import FetchMPacks
from musehub.services.mpack_build import plan_fetch
from tests.chains.rows import expire
from tests.chains.test_chain_properties import CONTENTS, Repo, prebuild
from tests.conftest import Hub
from tests.gc.helpers import row, set_expiry


def activities_of(hub: Hub, tmp_path: Path) -> PrebuildActivities:
    return PrebuildActivities(
        session_factory(hub.engine),
        hub.storage,
        hub.settings,
        staging=staging.StagingArea(tmp_path / "worker", hub.storage),
        worker_task_queue="this-worker",
    )


async def chain_wants(hub: Hub, repo_id: str, want: list[str]) -> list[tuple[str, ...]]:
    async with AsyncSession(hub.engine) as session:
        entry = await mpack_cache.lookup(session, repo_id, want)
    assert entry is not None and entry.chain is not None
    return [part.want for part in entry.chain.parts]


async def new_repo(hub: Hub) -> Repo:
    owner, slug, token = await hub.create_repo()
    return Repo(hub, owner, slug, token)


async def test_a_one_commit_push_is_appended_by_the_check_itself(hub: Hub, tmp_path: Path) -> None:
    repo = await new_repo(hub)
    first = repo.commit([], {"a": CONTENTS[0], "b": CONTENTS[1]})
    await repo.push("main", first)
    await prebuild(repo)
    second = repo.commit([first], {"a": CONTENTS[2], "b": CONTENTS[1]})
    await repo.push("main", second)

    async with AsyncSession(hub.engine) as session:
        quick = await top_ups.plan_quick_top_up(session, repo.repo_id, [second], compact_parts=32)
        full = await plan_fetch(session, repo.repo_id, [second], [first])
    assert quick is not None
    assert quick[1] == [first]
    assert quick[0] == full  # exactly what walking both histories plans

    activities = activities_of(hub, tmp_path)
    checked = await ActivityEnvironment().run(
        activities.check_or_append, CheckCacheInput(repo.repo_id, [second])
    )
    assert checked.verdict == "built"
    assert checked.cache_id == mpack_cache.cache_id_for(repo.repo_id, [second])
    assert await chain_wants(hub, repo.repo_id, [second]) == [(first,), (second,)]
    again = await ActivityEnvironment().run(
        activities.check_or_append, CheckCacheInput(repo.repo_id, [second])
    )
    assert again.verdict == "fresh"


async def test_a_merge_of_an_older_branch_is_planned_the_long_way(hub: Hub) -> None:
    """The merged branch's commits were received before the base row was recorded: they may be
    the base's, so the quick plan declines and the full plan decides. (Had the head set's row
    lived, it would be the base, and the merge quick.)"""
    repo = await new_repo(hub)
    root = repo.commit([], {"a": CONTENTS[0]})
    side = repo.commit([root], {"a": CONTENTS[0], "s": CONTENTS[1]})
    await repo.push("side", side)
    main = repo.commit([root], {"a": CONTENTS[1]})
    await repo.push("main", main)
    await prebuild(repo)
    for want in ([side], sorted([main, side])):
        await expire(hub, repo.repo_id, want)
    merge = repo.commit([main, side], {"a": CONTENTS[1], "s": CONTENTS[1]})
    await repo.push("main", merge)
    async with AsyncSession(hub.engine) as session:
        quick = await top_ups.plan_quick_top_up(session, repo.repo_id, [merge], compact_parts=32)
        plan, base_want = await top_ups.plan_top_up(
            session, repo.repo_id, [merge], compact_parts=32
        )
        full = await plan_fetch(session, repo.repo_id, [merge], base_want)
    assert quick is None
    assert base_want and plan == full


async def test_a_forced_rebuild_is_a_new_base(hub: Hub, tmp_path: Path) -> None:
    repo = await new_repo(hub)
    first = repo.commit([], {"a": CONTENTS[0]})
    await repo.push("main", first)
    await prebuild(repo)
    second = repo.commit([first], {"a": CONTENTS[1]})
    await repo.push("main", second)
    await prebuild(repo)
    assert len(await chain_wants(hub, repo.repo_id, [second])) == 2

    activities = activities_of(hub, tmp_path)
    env = ActivityEnvironment()
    checked = await env.run(
        activities.check_or_append, CheckCacheInput(repo.repo_id, [second], force=True)
    )
    assert checked.verdict == "build"  # never appended: forced means rebuilt
    step = BuildStepInput(repo.repo_id, [second], "forced-1", fresh_base=True)
    await env.run(activities.load_blobs, step)
    built = await env.run(activities.assemble, step)
    assert built.base_want == [] and built.commits == 2  # the whole history, one base
    uploaded = await env.run(
        activities.upload, UploadInput(repo.repo_id, step.build_id, built.size, built.sha256)
    )
    await env.run(
        activities.record_cache,
        RecordCacheInput(
            repo.repo_id,
            [second],
            uploaded.mpack_id,
            built.size,
            built.sha256,
            built.commits,
            built.objects,
            sections=built.sections,
            base_want=built.base_want,
        ),
    )
    assert await chain_wants(hub, repo.repo_id, [second]) == [(second,)]


async def test_pulls_are_answered_from_memory_by_position(hub: Hub) -> None:
    repo = await new_repo(hub)
    first = repo.commit([], {"a": CONTENTS[0]})
    await repo.push("main", first)
    await prebuild(repo)
    second = repo.commit([first], {"a": CONTENTS[1]})
    await repo.push("main", second)
    await prebuild(repo)
    third = repo.commit([second], {"a": CONTENTS[2]})
    await repo.push("main", third)
    await prebuild(repo)

    fetch = FetchMPacks(hub.engine, hub.storage, hub.settings)
    pulls = [
        await fetch.answer(repo.owner, repo.slug, [third], have, None, form="url")
        for have in ([second], [second], [first, "f" * 64], [first])
    ]
    assert {p.cache for p in pulls} == {"HIT"}
    assert pulls[0] is pulls[1]  # the same position: the answer kept, not made again
    assert pulls[2] is pulls[3]  # found from `have` whatever else it holds
    assert pulls[0].chain is not None and [p.want for p in pulls[0].chain.parts] == [(third,)]
    assert pulls[2].chain is not None and len(pulls[2].chain.parts) == 2
    assert pulls[2].pack is not None  # two parts joined for a client that takes one URL

    # A push through this process forgets them: the next pull sees the new chain.
    fourth = repo.commit([third], {"a": CONTENTS[0]})
    await repo.push("main", fourth)
    await prebuild(repo)
    fetch.forget_repo(repo.owner, repo.slug)
    after = await fetch.answer(repo.owner, repo.slug, [fourth], [third], None, form="url")
    assert after.cache == "HIT" and after is not pulls[0]
    # A have that holds no position: built for the request.
    stranger = await fetch.answer(repo.owner, repo.slug, [fourth], ["e" * 64], None, form="url")
    assert stranger.cache == "UNCACHED"

    # A row about to expire is not answered from memory: the database path slides its expiry
    # past the URLs it hands out, so GC cannot take the parts from under them.
    cache_id = mpack_cache.cache_id_for(repo.repo_id, [fourth])
    await set_expiry(hub, cache_id, timedelta(minutes=2))
    fetch.forget_repo(repo.owner, repo.slug)
    near = await fetch.answer(repo.owner, repo.slug, [fourth], [third], None, form="url")
    assert near.cache == "HIT"
    assert (await row(hub, cache_id)).expires_at > near.expires_at


async def test_a_quick_top_up_that_fails_is_left_to_the_staged_steps(
    hub: Hub, tmp_path: Path
) -> None:
    """A blob storage lost: the check does not retry a build that cannot succeed; the staged
    steps report it as the business error it is."""
    repo = await new_repo(hub)
    first = repo.commit([], {"a": CONTENTS[0]})
    await repo.push("main", first)
    await prebuild(repo)
    second = repo.commit([first], {"a": b"a blob storage will lose"})
    await repo.push("main", second)
    async with AsyncSession(hub.engine) as session:
        plan, _ = await top_ups.plan_top_up(session, repo.repo_id, [second], compact_parts=32)
    (lost,) = plan.objects
    await hub.storage.delete(lost.storage_key)

    checked = await ActivityEnvironment().run(
        activities_of(hub, tmp_path).check_or_append, CheckCacheInput(repo.repo_id, [second])
    )
    assert checked.verdict == "build" and checked.task_queue == "this-worker"
    async with AsyncSession(hub.engine) as session:
        assert await mpack_cache.lookup(session, repo.repo_id, [second]) is None


async def test_the_quick_plan_gives_up_past_its_walk_limit(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache check runs it under a short timeout: a long first push (no chain to stop at)
    or a big push is left to the staged steps, which walk as far as they must."""
    monkeypatch.setattr(top_ups, "QUICK_MAX_COMMITS", 4)
    repo = await new_repo(hub)
    tip = repo.commit([], {"a": CONTENTS[0]})
    for n in range(5):
        tip = repo.commit([tip], {"a": bytes([n])})
    await repo.push("main", tip)
    async with AsyncSession(hub.engine) as session:
        assert await chains.closest_base(session, repo.repo_id, [tip], max_walk=4) is None
    await prebuild(repo)

    short = tip
    for n in range(2):
        short = repo.commit([short], {"a": bytes([10 + n])})
    await repo.push("main", short)
    long = short
    for n in range(4):
        long = repo.commit([long], {"a": bytes([20 + n])})
    await repo.push("other", long)
    async with AsyncSession(hub.engine) as session:
        quick = await top_ups.plan_quick_top_up(session, repo.repo_id, [short], compact_parts=32)
        assert quick is not None and len(quick[0].commit_ids) == 2
        assert (
            await top_ups.plan_quick_top_up(session, repo.repo_id, [long], compact_parts=32) is None
        )
        plan, base_want = await top_ups.plan_top_up(session, repo.repo_id, [long], compact_parts=32)
    assert base_want == [tip] and len(plan.commit_ids) == 6


async def test_the_head_set_is_quick_when_a_tip_was_appended_before_it(
    hub: Hub, tmp_path: Path
) -> None:
    """The tips' checks run beside the head set's: the pushed tip's row may be recorded first.
    Its tip stops the walk from the head set, so the one-tip row is found first; the head set's
    own older row is then found past it, and the head set stays a quick top-up (it went the
    long way, walking both histories: 2.5-3.2 s on 1,000- and 100,000-commit histories)."""
    repo = await new_repo(hub)
    root = repo.commit([], {"a": CONTENTS[0]})
    await repo.push("main", root)
    side = repo.commit([root], {"a": CONTENTS[1]})
    await repo.push("side", side)
    await prebuild(repo)
    head_set = sorted([root, side])
    main = repo.commit([root], {"a": CONTENTS[2]})
    await repo.push("main", main)

    activities = activities_of(hub, tmp_path)
    tip = await ActivityEnvironment().run(
        activities.check_or_append, CheckCacheInput(repo.repo_id, [main])
    )
    assert tip.verdict == "built"
    want = sorted([main, side])
    async with AsyncSession(hub.engine) as session:
        first = await chains.closest_base(session, repo.repo_id, want, max_walk=100)
        quick = await top_ups.plan_quick_top_up(session, repo.repo_id, want, compact_parts=32)
    # A tip's own row is found first (the tip just recorded stops the walk; ties go by id).
    assert first is not None and first.want in ([main], [side])
    assert quick is not None and quick[1] == head_set
    assert quick[0].commit_ids == [main]
