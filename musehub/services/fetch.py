"""The answer to `POST /fetch`, behind one entry point: `FetchMPacks.answer`.

An answer is stored packs plus presigned URLs to them (`fetch_answer.py`): a chain of parts
(`chains.py`) and, for clients that take one URL, the chain joined into one pack. Like Gitaly's
pack-objects cache, the handler makes one call and everything behind it lives here, with its
metrics beside it, and in two helpers: the synchronous builds (`sync_builds.py`: 3. and 5.)
and answers made of stored packs, checked and presigned (`stored_answers.py`: 6.):

1. A clone (`have == []`) of a want set this process answered in the last second is answered
   from memory (`WarmAnswers`): a want set's parts never change and their URLs stay valid for
   minutes.
2. Otherwise one statement finds the repo, its live cache row with its chain, and its heads
   (`mpack_cache.lookup_clone`); a hit costs that plus presigns, whatever the repo's size.
3. A miss builds synchronously (`SyncBuilds.build`, by default `build_and_upload`) under an
   advisory lock on the want set, so a herd of cold clones builds once across every process,
   and records the pack as a one-part chain so the next clone hits. Only want sets clones ask
   for earn a row (the head set, one current tip); any other is built on demand and never
   recorded (UNCACHED): a stranger cannot fill storage with cached want sets.
4. A fetch with `have` holding a position of the want set's chain (a pull after a push) is
   answered with the parts after it, as a hit; any other is built on demand (UNCACHED), one
   build for identical pulls at once across every process (`SyncBuilds.shared_pull`). The
   chain is looked up once a second per want set (like 1.), the position is found in it in
   memory, and the answer for that position (only its own parts checked and presigned) is
   kept for a second (`RecentRests`): a herd of CI runners pulling the newest push costs one
   lookup a second, like a herd of clones.
5. Every synchronous build takes a hub-wide and a per-repository build slot (advisory locks,
   so across every process); when either is full the fetch gets 503 with Retry-After.
6. A pack storage lost is never promised: each lookup, and each inline answer, checks the
   objects first; a row naming a lost object is dropped and the pack built again (the check
   the prebuild and GC share: `lost_packs.still_stored`).
7. A client that takes one URL of a chain of several parts gets them joined into one pack, by
   byte ranges, on first demand; a clone's joined pack is recorded on its row.
8. A clone or pull that sent `mpack-refs` with an empty `want` (`answer_head_set`) asks for
   the head set without a `GET /refs` first: the refs are looked up like 1. (per repo) and the
   answer is 1.-4. for those heads (with the pull's `have`). One round trip fewer for every
   clone and every pull that brings something. Every change to a repo's refs, in any process,
   is announced by the database (`refs_changes.py`) and forgets its refs at once; while that
   announcement cannot be heard, refs are looked up on every request instead.

Every answer is counted (`musehub_fetch_total`, `musehub_fetch_seconds`) and logged as
`[wire_fetch_mpack] cache=HIT|MISS|UNCACHED repo=… tip=… t=…ms` in one place, `_observe`."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from musehub.db.engine import session_factory
from musehub.logs import info_line
from musehub.metric_batches import BatchedCounter, BatchedHistogram
from musehub.metrics import BUILD_BYTES, BUILD_SECONDS, FETCH_SECONDS, FETCHES, REFS_LISTENING
from musehub.services import history, mpack_cache, pull_packs
from musehub.services.chains import Chain
from musehub.services.fetch_answer import (
    AnswerForm,
    CacheOutcome,
    FetchAnswer,
    FetchMPack,
)
from musehub.services.growing_pack import GrowingPack
from musehub.services.mpack_build import join_and_upload
from musehub.services.mpack_cache import EXPIRY_SLACK, CloneLookup
from musehub.services.recent_rests import RecentRests
from musehub.services.repos import (
    branch_heads,
    could_exist,
    is_readable,
    not_found,
    repo_for_read,
)
from musehub.services.stored_answers import StoredAnswers
from musehub.services.sync_builds import Build, SyncBuilds
from musehub.services.warm_answers import WarmAnswers
from musehub.services.zstd_answers import with_zstd
from musehub.settings import Settings
from musehub.storage import ObjectStorage

log = logging.getLogger("musehub.fetch")

__all__ = ["AnswerForm", "CacheOutcome", "FetchAnswer", "FetchMPack", "FetchMPacks"]


class FetchMPacks:
    def __init__(
        self,
        engine: AsyncEngine,
        storage: ObjectStorage,
        settings: Settings,
        *,
        build: Build | None = None,
    ) -> None:
        self._engine = engine
        self._sessions = session_factory(engine)
        self._storage = storage
        self._settings = settings
        self._warm: WarmAnswers[FetchAnswer] = WarmAnswers(settings.api.warm_answer_ttl_seconds)
        self._chains: WarmAnswers[Chain] = WarmAnswers(settings.api.warm_answer_ttl_seconds)
        self._refs: WarmAnswers[CloneLookup] = WarmAnswers(settings.api.warm_answer_ttl_seconds)
        self._refs_kept = False  # only while every change reaches forget_repo (refs_listening)
        self._rests = RecentRests(settings.api.warm_answer_ttl_seconds)
        self._answers = StoredAnswers(self._sessions, storage, settings)
        self.builds = SyncBuilds(self._sessions, storage, settings, self._answers, build=build)

    async def answer(
        self,
        owner: str,
        slug: str,
        want: Sequence[str],
        have: Sequence[str],
        user: str | None,
        *,
        form: AnswerForm,
        zstd: bool = False,
    ) -> FetchAnswer:
        """Everything `want` reaches and `have` does not, as stored packs. Raises NotFound for a
        repo `user` may not read, as if it did not exist, and Unavailable when the answer
        needs a build and every build slot is taken. A `url` answer always has its one pack;
        with `zstd` (the client sent `mpack-zstd`) it may have their zstd copies too."""
        started = time.perf_counter()
        wants = mpack_cache.normalise_want(want)
        if have:
            repo_id, answer = await self._with_have(owner, slug, wants, list(have), user, form)
            if zstd and answer.growing is None:
                answer = await self._zstd(answer, form, repo_id)
        else:
            repo_id, answer = await self._clone(owner, slug, wants, user, form, zstd)
        _observe(answer, form, repo_id, wants, started)
        return answer

    async def answer_head_set(
        self,
        owner: str,
        slug: str,
        user: str | None,
        *,
        have: Sequence[str] = (),
        form: AnswerForm,
        zstd: bool = False,
    ) -> tuple[CloneLookup, FetchAnswer | None]:
        """A clone or pull that asked for the head set (`mpack-refs`, an empty `want`): the
        repo's refs, what `GET /refs` says, and the answer for every branch head that `have`
        does not already name; None when there is nothing to send (no branches, or `have`
        holds every head: a pull that is up to date). The refs are looked up once a second per
        repo, as warm answers are, while every change to them reaches `forget_repo` (a push
        through this process; any other, by `refs_listening`), and on every request otherwise.
        The answer is the one `answer` gives for those heads and `have`, so the packs always
        match the refs they come with."""
        if self._refs_kept:
            found, _ = await self._refs.get_or_lookup(
                owner, slug, [], lambda: self._refs_lookup(owner, slug)
            )
        else:
            found, _ = await self._refs_lookup(owner, slug)
        if found is None or not is_readable(found.owner, found.visibility, user):
            raise not_found(owner, slug)
        want = mpack_cache.normalise_want(found.branch_heads.values())
        if not want or set(want) <= set(have):
            return found, None
        return found, await self.answer(owner, slug, want, have, user, form=form, zstd=zstd)

    async def check_readable(self, owner: str, slug: str, user: str | None) -> None:
        """Raises NotFound unless `user` may read the repo: for callers that must refuse a
        stranger before they read a large request body."""
        async with self._sessions() as session:
            await repo_for_read(session, owner, slug, user)

    @property
    def keeps_refs(self) -> bool:
        """Whether refs are kept between requests now (see `refs_listening`)."""
        return self._refs_kept

    def refs_listening(self, listening: bool) -> None:
        """Whether every change to a repo's refs now reaches `forget_repo`, from whatever process
        or hand made it (`refs_changes.RefsChanges`): only then are refs kept between
        requests. Either way what was kept goes: it may have missed a change."""
        if listening and not self._refs_kept:
            REFS_LISTENING.inc()
        elif self._refs_kept and not listening:
            REFS_LISTENING.dec()
        self._refs_kept = listening
        self._refs.forget_all()

    def forget_repo(self, owner: str, slug: str) -> None:
        """After a push, or a change to the repo's refs anywhere: this process's recent
        answers for the repo are stale."""
        self._warm.forget_repo(owner, slug)
        self._refs.forget_repo(owner, slug)
        self._chains.forget_repo(owner, slug)
        self._rests.forget_repo(owner, slug)

    async def _clone(
        self, owner: str, slug: str, want: list[str], user: str | None, form: AnswerForm, zstd: bool
    ) -> tuple[str, FetchAnswer]:
        found, answer = await self._warm.get_or_lookup(
            owner, slug, want, lambda: self._lookup(owner, slug, want)
        )
        if found is None or not is_readable(found.owner, found.visibility, user):
            raise not_found(owner, slug)
        # Inline bytes are promised by a Content-Length: check the packs are still there first.
        if (
            answer is not None
            and form == "inline"
            and not await self._answers.still_stored(found.repo_id, answer)
        ):
            self._warm.forget_repo(owner, slug)
            answer = None
        if answer is not None and form == "url" and answer.pack is None:
            answer = await self._joined_for_clone(found.repo_id, want, answer)
            self._warm.put(owner, slug, want, found, answer)
        if answer is not None and zstd and not answer.has_zstd(form):
            answer = await self._zstd(answer, form, found.repo_id)
            self._warm.put(owner, slug, want, found, answer)
        if answer is not None:
            return found.repo_id, answer
        heads = found.branch_heads
        if not _asked_by_clones(want, heads):
            # An old commit, a subset of the branches: built on demand, never recorded, so a
            # stranger cannot fill the cache with want sets (its object goes with the GC).
            return found.repo_id, await self.builds.answer_while_building(
                "UNCACHED",
                heads,
                lambda growing: self.builds.unrecorded(found.repo_id, want, [], heads, growing),
            )

        async def build_and_remember(growing: GrowingPack | None) -> FetchAnswer:
            answer = await self.builds.build_and_record(found.repo_id, want, heads, growing)
            if answer.cache != "UNCACHED":
                # Just built (or found by a racing build): a live pack answers this want set.
                self._warm.put(owner, slug, want, found, answer.as_hit())
            return answer

        flight = (found.repo_id, tuple(want), ())
        answer = await self.builds.answer_while_building("MISS", heads, build_and_remember, flight)
        if answer.growing is None and form == "url" and answer.pack is None:
            # Another builder recorded the want set as a chain while this request waited.
            answer = await self._joined_for_clone(found.repo_id, want, answer)
        if zstd and answer.growing is None:
            answer = await self._zstd(answer, form, found.repo_id)
        return found.repo_id, answer

    async def _zstd(self, answer: FetchAnswer, form: AnswerForm, repo_id: str) -> FetchAnswer:
        return await with_zstd(
            answer,
            form,
            repo_id=repo_id,
            sessions=self._sessions,
            storage=self._storage,
            work_dir=self._settings.work_dir,
            presign_ttl_seconds=self._settings.storage.presign_ttl_seconds,
        )

    async def _lookup(
        self, owner: str, slug: str, want: list[str]
    ) -> tuple[CloneLookup | None, FetchAnswer | None]:
        """One round trip, one look at storage per pack, presigns (and, outside the throttled
        expiry slide, no further database work). Runs once per want set per second and
        process."""
        if not could_exist(owner, slug):
            return None, None  # a name no repo can have (NUL, newline): not found
        found = await mpack_cache.lookup_clone(self._engine, owner, slug, want)
        if found is None or found.entry is None:
            return found, None
        async with self._sessions() as session:
            entry = await self._answers.usable(session, found.repo_id, found.entry)
            await session.commit()
        if entry is None:
            return found, None  # collected, or lost from storage: build it again
        return found, await self._answers.answer_of(entry, found.branch_heads, "HIT")

    async def _refs_lookup(
        self, owner: str, slug: str
    ) -> tuple[CloneLookup | None, CloneLookup | None]:
        if not could_exist(owner, slug):
            return None, None
        found = await mpack_cache.lookup_clone(self._engine, owner, slug, [])
        return found, found  # kept as the "pack" too: WarmAnswers keeps only what it found

    async def _with_have(
        self,
        owner: str,
        slug: str,
        want: list[str],
        have: list[str],
        user: str | None,
        form: AnswerForm,
    ) -> tuple[str, FetchAnswer]:
        """A pull or fetch: the rest of the want set's chain when `have` holds one of its
        positions, else a build for this request."""
        warm = await self._warm_rest(owner, slug, want, have, user, form)
        if warm is not None:
            return warm
        async with self._sessions() as session:
            repo = await repo_for_read(session, owner, slug, user)
            heads = await branch_heads(session, repo.repo_id)
            entry = await mpack_cache.lookup(session, repo.repo_id, want)
            rest = entry.chain.after(have) if entry is not None and entry.chain else None
            stored = rest is not None and await self._answers.parts_stored(
                session, repo.repo_id, rest
            )
            if entry is not None and rest is not None and rest.parts and stored:
                # The row must outlive the URLs this answer hands out (None: GC took it).
                slid = await self._answers.slide_expiry(session, entry)
                await session.commit()
                if slid is not None:
                    answer = await self._answer_of_rest(repo.repo_id, rest, heads, form)
                    return repo.repo_id, answer
            matters = await history.existing_commit_ids(session, repo.repo_id, have)
            await session.commit()  # ends a lost part's drop
        # Single-flighted, in this process and across processes: ids the repo does not hold (a
        # client's unpushed commits) change nothing in the pack, so they do not tell pulls apart.
        known = sorted(matters)
        key = pull_packs.pull_key(repo.repo_id, want, known)
        return repo.repo_id, await self.builds.answer_while_building(
            "UNCACHED",
            heads,
            lambda growing: self.builds.shared_pull(repo.repo_id, want, have, key, heads, growing),
            (repo.repo_id, tuple(want), tuple(known)),
        )

    async def _warm_rest(
        self,
        owner: str,
        slug: str,
        want: list[str],
        have: list[str],
        user: str | None,
        form: AnswerForm,
    ) -> tuple[str, FetchAnswer] | None:
        """A pull answered like a warm clone: the want set's chain found by one lookup a second
        (`_chains`, none in between), the position `have` holds found in it in memory, and the
        answer for that position (only its parts checked in storage and presigned) kept for a
        second (`RecentRests`). None when no live chain answers the want set, `have` holds none
        of its positions, a part is gone, or the row would expire before the URLs: the caller
        looks again in the database (sliding the expiry), and builds."""
        found, chain = await self._chains.get_or_lookup(
            owner, slug, want, lambda: self._chain_lookup(owner, slug, want)
        )
        if found is None or not is_readable(found.owner, found.visibility, user):
            raise not_found(owner, slug)
        rest = chain.after(have) if chain is not None else None
        if found.entry is None or rest is None or not rest.parts:
            return None
        if found.entry.expires_at < datetime.now(UTC) + self._settings.presign_ttl + EXPIRY_SLACK:
            return None  # the database path slides it past this answer's URLs
        key = (owner, slug, tuple(want), tuple(p.mpack_id for p in rest.parts))
        pull = self._rests.get(key)
        if pull is None or (form == "url" and pull.pack is None):
            repo_id, heads = found.repo_id, found.branch_heads

            async def fresh() -> FetchAnswer | None:
                async with self._sessions() as session:
                    stored = await self._answers.parts_stored(session, repo_id, rest)
                    await session.commit()  # ends a lost part's drop
                if not stored:
                    self.forget_repo(owner, slug)
                    return None
                return await self._answer_of_rest(repo_id, rest, heads, form)

            # One check and presign for a herd asking at once (recent_rests.RecentRests.once).
            made = await self._rests.once((key, form), fresh)
            if made is None:
                return None
            pull = made
        elif form == "inline" and not await self._answers.still_stored(found.repo_id, pull):
            self.forget_repo(owner, slug)
            return None
        self._rests.put(key, pull)
        return found.repo_id, pull

    async def _chain_lookup(
        self, owner: str, slug: str, want: list[str]
    ) -> tuple[CloneLookup | None, Chain | None]:
        """The repo, its heads and the want set's live chain: one statement, nothing else (a
        pull checks and presigns only the parts it sends)."""
        if not could_exist(owner, slug):
            return None, None
        found = await mpack_cache.lookup_clone(self._engine, owner, slug, want)
        chain = found.entry.chain if found is not None and found.entry is not None else None
        return found, chain

    async def _answer_of_rest(
        self, repo_id: str, rest: Chain, heads: dict[str, str], form: AnswerForm
    ) -> FetchAnswer:
        """The parts after the client's position; as one pack too when it is one part, or when
        the client takes one URL (joined for this request, not recorded: a pull's rest is
        short-lived, and its object goes with the orphan sweep)."""
        pack = None
        if len(rest.parts) == 1:
            only = rest.parts[0]
            pack = await self._answers.presigned(only.mpack_id, only.size, only.sha256, "HIT")
        elif form == "url":
            key, digest = await join_and_upload(
                self._storage, repo_id, [p.stored for p in rest.parts], self._settings.work_dir
            )
            pack = await self._answers.presigned(key, digest.size, digest.sha256, "HIT")
        return await self._answers.chain_answer(rest, pack, heads, "HIT")

    async def _joined_for_clone(
        self, repo_id: str, want: list[str], answer: FetchAnswer
    ) -> FetchAnswer:
        """The clone's chain joined into one pack and recorded on its row, once for everyone
        (under the want set's lock): for clients that take one URL."""
        assert answer.chain is not None
        async with self._sessions() as session:
            await mpack_cache.lock_want_set(session, repo_id, want)
            entry = await mpack_cache.lookup(session, repo_id, want)
            if entry is not None and entry.mpack_id is not None and entry.sha256 is not None:
                key, size, sha256 = entry.mpack_id, entry.size_bytes, entry.sha256
            else:
                parts = [p.stored for p in answer.chain.parts]
                key, digest = await join_and_upload(
                    self._storage, repo_id, parts, self._settings.work_dir
                )
                await mpack_cache.hold_mpack_object(session, key)
                size, sha256 = digest.size, digest.sha256
                await mpack_cache.record_joined(session, repo_id, want, key, sha256)
            await session.commit()
        pack = await self._answers.presigned(key, size, sha256, answer.cache)
        return FetchAnswer(
            answer.cache,
            answer.branch_heads,
            answer.size,
            answer.expires_at,
            pack,
            answer.chain,
            answer.parts,
        )


@functools.cache
def _counted(cache: CacheOutcome, form: AnswerForm) -> tuple[BatchedCounter, BatchedHistogram]:
    """The labelled series, looked up once: `labels()` locks and hashes on every call."""
    return BatchedCounter(FETCHES.labels(cache=cache, form=form)), BatchedHistogram(
        FETCH_SECONDS.labels(cache=cache)
    )


def _asked_by_clones(want: list[str], heads: dict[str, str]) -> bool:
    """Whether clones ask for this want set, so that it earns a cache row: the repo's whole head
    set (what `muse clone` sends) or one current branch tip."""
    tips = set(heads.values())
    return want == sorted(tips) or (len(want) == 1 and want[0] in tips)


def _observe(
    answer: FetchAnswer, form: AnswerForm, repo_id: str, want: list[str], started: float
) -> None:
    elapsed = time.perf_counter() - started
    answers, seconds = _counted(answer.cache, form)
    answers.inc()
    seconds.observe(elapsed)
    if answer.cache != "HIT":
        BUILD_SECONDS.labels(path="sync").observe(elapsed)
        BUILD_BYTES.labels(path="sync").inc(answer.size)
    tips = ",".join(w[:12] for w in want)
    ms = elapsed * 1000
    info_line(
        log, f"[wire_fetch_mpack] cache={answer.cache} repo={repo_id} tip={tips} t={ms:.1f}ms"
    )
