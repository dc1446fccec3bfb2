"""What the scenarios do to the running hub: create repos and tokens, push synthetic history,
watch the prebuilt-pack cache, and reach the hub's database and blobs folder in-process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import msgpack
import psutil
from sqlalchemy import text

from bench.stack import Stack
from musehub.client.push import push_repository
from musehub.client.wire import MuseRemote
from musehub.contract import build_targets
from musehub.db.engine import create_engine, session_factory
from musehub.services.mpack_build import BuiltMPack, build_and_upload
from musehub.services.mpack_cache import cache_id_for
from musehub.services.repos import create_repo
from musehub.services.tokens import create_token
from musehub.settings import ApiSettings, DatabaseSettings, Settings, StorageSettings
from musehub.storage import build_storage
from musehub.synth import SynthRepo, push_synth
from musehub.synth.repo import Record

OWNER = "bench"
PUSH_TIMEOUT_S = 900.0
MSGPACK = "application/x-msgpack"
HEADERS = {"Content-Type": MSGPACK, "Accept": MSGPACK}


@dataclass
class PushedRepo:
    slug: str
    url: str
    repo_id: str
    heads: dict[str, str]
    synth: SynthRepo
    push_seconds: float
    pushes: int
    push_ended: float  # time.monotonic() when the last push answered
    token: str = ""  # a push token of the repo's owner, for later pushes

    @property
    def want(self) -> list[str]:
        return sorted(set(self.heads.values()))

    @property
    def targets(self) -> list[list[str]]:
        """What the prebuild builds: one pack per tip, plus the whole head set."""
        return build_targets(list(self.heads.values()))

    @property
    def root_commit(self) -> str:
        return str(self.synth.commits[0]["commit_id"])


def fetch_body(want: Sequence[str], have: Sequence[str] = (), *, url_form: bool = True) -> bytes:
    body: dict[str, object] = {"want": list(want), "have": list(have)}
    if url_form:
        body["capabilities"] = ["mpack-url"]
    return msgpack.packb(body, use_bin_type=True)


class Hub:
    def __init__(self, stack: Stack, *, storage: StorageSettings | None = None) -> None:
        """`storage`: the stack's storage settings when they are not the default local folder."""
        self.stack = stack
        self.settings = Settings(
            state_dir=stack.state_dir,
            database=DatabaseSettings(url=stack.database_url),
            api=ApiSettings(port=stack.api_port),
            storage=storage or StorageSettings(),
        )
        self.engine = create_engine(self.settings.database_url, pool_size=4)
        self.sessions = session_factory(self.engine)
        self.storage = build_storage(self.settings)
        self.pushed: dict[str, PushedRepo] = {}

    async def aclose(self) -> None:
        await self.storage.aclose()
        await self.engine.dispose()

    async def new_repo(self, slug: str) -> tuple[str, str]:
        """Create OWNER/slug and a push token; returns (repo_id, token)."""
        async with self.sessions() as session:
            repo = await create_repo(session, OWNER, slug)
            token = await create_token(session, OWNER)
            await session.commit()
        return repo.repo_id, token

    async def push(self, slug: str, synth: SynthRepo) -> PushedRepo:
        """A new repo holding `synth`, pushed through the wire endpoints like `musehub synth`."""
        repo_id, token = await self.new_repo(slug)
        url = f"{self.stack.base_url}/{OWNER}/{slug}"
        async with MuseRemote(url, token, timeout=PUSH_TIMEOUT_S) as remote:
            report = await asyncio.wait_for(push_synth(remote, synth), PUSH_TIMEOUT_S)
        pushed = PushedRepo(
            slug,
            url,
            repo_id,
            dict(report.branch_heads),
            synth,
            report.seconds,
            report.pushes,
            time.monotonic(),
            token,
        )
        self.pushed[slug] = pushed
        return pushed

    async def push_commit(
        self,
        repo: PushedRepo,
        branch: str,
        commit: Record,
        snapshot: Record,
        blobs: dict[str, bytes],
    ) -> float:
        """Push one commit (its parent already on `branch`) the way `muse push` does; updates
        `repo.heads` and `repo.push_ended`. Returns the seconds the push took."""
        if not repo.token:
            repo.token = await self._token()
        began = time.monotonic()
        async with MuseRemote(repo.url, repo.token, timeout=PUSH_TIMEOUT_S) as remote:
            answer = await push_repository(
                remote, [commit], {snapshot["snapshot_id"]: snapshot}, blobs, branch
            )
        repo.push_ended = time.monotonic()
        heads = answer.get("branch_heads") or {}
        repo.heads = {str(b): str(c) for b, c in heads.items()} or {
            **repo.heads,
            branch: commit["commit_id"],
        }
        return repo.push_ended - began

    async def _token(self) -> str:
        async with self.sessions() as session:
            token = await create_token(session, OWNER)
            await session.commit()
        return token

    async def build_head_set(self, repo: PushedRepo) -> BuiltMPack:
        """The head set's whole pack built and uploaded by the hub's one build, outside any
        cache row (its object is left for the orphan sweep): a baseline to compare with."""
        async with self.sessions() as session:
            return await build_and_upload(
                session,
                repo.repo_id,
                repo.want,
                [],
                storage=self.storage,
                work_dir=self.settings.work_dir,
                read_concurrency=self.settings.storage.read_concurrency,
            )

    async def pack_objects(self, repo_id: str) -> dict[str, int]:
        """Every pack object of the repo in storage (`mpacks/<repo>/`): key -> bytes."""
        return {info.key: info.size async for info in self.storage.list(f"mpacks/{repo_id}/")}

    async def recorded_packs(self, repo_id: str) -> dict[str, int]:
        """Every pack object the repo's rows name (chain parts and one-pack objects) -> bytes."""
        async with self.sessions() as session:
            rows = await session.execute(
                text(
                    "SELECT mpack_id, size_bytes FROM musehub_mpack_parts WHERE repo_id = :r "
                    "UNION SELECT mpack_id, size_bytes FROM musehub_fetch_mpack_cache "
                    "WHERE repo_id = :r AND mpack_id IS NOT NULL"
                ),
                {"r": repo_id},
            )
            return {str(key): int(size) for key, size in rows}

    async def chain_positions(self, repo_id: str) -> set[tuple[str, ...]]:
        """The want sets of every link of the repo's chains: a `have` holding one is a hit."""
        async with self.sessions() as session:
            rows = await session.execute(
                text(
                    "SELECT DISTINCT l.want_commit_ids FROM musehub_mpack_chain_links l "
                    "JOIN musehub_fetch_mpack_cache f ON f.cache_id = l.cache_id "
                    "WHERE f.repo_id = :r"
                ),
                {"r": repo_id},
            )
            return {tuple(sorted(want)) for want in rows.scalars()}

    async def parts_at(self, repo_id: str, commit_id: str) -> set[str]:
        """The parts linked at a position that holds `commit_id`: the top-ups a push of that
        commit made (a compaction's new base sits at an older position)."""
        async with self.sessions() as session:
            rows = await session.execute(
                text(
                    "SELECT DISTINCT l.mpack_id FROM musehub_mpack_chain_links l "
                    "JOIN musehub_fetch_mpack_cache f ON f.cache_id = l.cache_id "
                    "WHERE f.repo_id = :r AND :c = ANY(l.want_commit_ids)"
                ),
                {"r": repo_id, "c": commit_id},
            )
            return {str(key) for key in rows.scalars()}

    async def cached(self, repo_id: str, targets: Sequence[Sequence[str]]) -> set[str]:
        """The cache ids of `targets` that have a live prebuilt pack."""
        ids = [cache_id_for(repo_id, want) for want in targets]
        async with self.sessions() as session:
            rows = await session.execute(
                text(
                    "SELECT cache_id FROM musehub_fetch_mpack_cache "
                    "WHERE cache_id = ANY(:ids) AND expires_at > now()"
                ),
                {"ids": ids},
            )
            return set(rows.scalars())

    async def wait_warm(
        self,
        repo: PushedRepo,
        targets: Sequence[Sequence[str]] | None = None,
        *,
        timeout: float = 900.0,  # noqa: ASYNC109 - a deadline, not a cancel
        poll: float = 0.05,
    ) -> float | None:
        """Poll until every target has a pack; the monotonic time it was seen, or None."""
        targets = targets if targets is not None else repo.targets
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(await self.cached(repo.repo_id, targets)) == len(targets):
                return time.monotonic()
            await asyncio.sleep(poll)
        return None

    async def drop_cache(self, repo_id: str) -> int:
        """Forget every prebuilt pack of a repo (as if they had expired): the next clone misses."""
        async with self.sessions() as session:
            result = await session.execute(
                text("DELETE FROM musehub_fetch_mpack_cache WHERE repo_id = :r"), {"r": repo_id}
            )
            await session.commit()
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def quiesce(
        self,
        *,
        below_percent: float = 15.0,
        sample: float = 0.5,
        timeout: float = 180.0,  # noqa: ASYNC109
    ) -> float:
        """Wait until the stack's processes (API, worker, PostgreSQL, Temporal) use less than
        `below_percent` of one core for two samples running, so leftover background work (a
        prebuild, a vacuum) does not leak into a measurement. Returns the seconds waited."""
        began = time.monotonic()
        quiet = 0
        while time.monotonic() - began < timeout and quiet < 2:
            busy = await asyncio.to_thread(self._stack_cpu, sample)
            quiet = quiet + 1 if busy < below_percent else 0
        return time.monotonic() - began

    def _stack_cpu(self, interval: float) -> float:
        try:
            parts = psutil.Process(self.stack.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return 0.0
        before = {p.pid: _cpu_seconds(p) for p in parts}
        time.sleep(interval)
        used = sum(_cpu_seconds(p) - before[p.pid] for p in parts)
        return 100.0 * used / interval

    def fetch_outcomes_logged(self) -> dict[str, int]:
        """How many fetches the API has logged per cache outcome so far."""
        counts = {"HIT": 0, "MISS": 0, "UNCACHED": 0}
        if self.stack.api_log.exists():
            with self.stack.api_log.open(errors="replace") as log:
                for line in log:
                    if "[wire_fetch_mpack] cache=" in line:
                        outcome = line.split("cache=", 1)[1].split(" ", 1)[0]
                        counts[outcome] = counts.get(outcome, 0) + 1
        return counts


def _cpu_seconds(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)
