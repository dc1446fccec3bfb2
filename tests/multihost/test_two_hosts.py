"""Two hosts, as production runs them: on each an API process and a worker (`musehub api`,
`musehub worker`) with its own state and staging folders; one PostgreSQL, one Temporal and one
S3 bucket (moto, with R2's read latency) shared. A big repo is pushed; the worker that claimed
its build is killed with SIGKILL while it assembles the pack. The other host's worker builds it
again, every clone asked of either API meanwhile is answered and checks out, and once the killed
worker's host has started a worker again and GC has run, nothing is left: no staging folder of a
dead worker, no object in the bucket that no row names, no upload, no unfinished multipart
upload."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import itertools
import os
import time
import uuid
from asyncio.subprocess import PIPE
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import msgpack
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from temporalio.client import WorkflowHandle, WorkflowQueryFailedError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from musehub.client.wire import MuseRemote
from musehub.contract import STATUS_QUERY, PrebuildStatus, prebuild_workflow_id
from musehub.mpack.reader import read_mpack
from musehub.services import mpack_cache
from musehub.services.repos import create_repo
from musehub.services.staging import sweep_abandoned
from musehub.services.tokens import create_token
from musehub.settings import load_settings
from musehub.storage.s3 import PART_SIZE
from musehub.synth import generate_repo, push_synth
from tests.hub_storage import age_in_moto, s3_storage_settings, storage_environment
from tests.multihost.hosts import MUSEHUB, Host
from tests.storage.s3_server import MotoS3

# 11.5 MB of blobs, 54 of them over 64 KiB (pushed by presigned PUT): the pack goes up in two
# multipart parts. With 4 reads of 50 ms in flight, assembling it takes a worker about 3 s.
COMMITS, FILES, FILE_SIZE, BLOBS = 120, 240, 48_000, 240
READS = {"MUSEHUB_STORAGE_READ_DELAY_MS": "50", "MUSEHUB_STORAGE_READ_CONCURRENCY": "4"}
HEADERS = {"Content-Type": "application/x-msgpack", "Accept": "application/x-msgpack"}


@dataclass
class Site:
    """Two hosts and what they share."""

    a: Host
    b: Host
    bucket: str
    environment: dict[str, str]

    @property
    def hosts(self) -> tuple[Host, Host]:
        return self.a, self.b


@pytest.fixture
async def site(
    tmp_path: Path, db_engine: AsyncEngine, temporal_env: WorkflowEnvironment, moto_s3: MotoS3
) -> AsyncIterator[Site]:
    unique = uuid.uuid4().hex[:8]
    bucket = moto_s3.create_bucket()
    shared = dict(
        os.environ,
        MUSEHUB_DATABASE_URL=db_engine.url.render_as_string(hide_password=False),
        MUSEHUB_TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host,
        MUSEHUB_TEMPORAL_PREBUILD_TASK_QUEUE=f"prebuild-multihost-{unique}",
        MUSEHUB_TEMPORAL_TASK_QUEUE=f"general-multihost-{unique}",
        MUSEHUB_TEMPORAL_WORKER_LOSS_SECONDS="3",
        MUSEHUB_GC_SCHEDULE_ID=f"gc-multihost-{unique}",
        # The database is the whole suite's: this GC must not rebuild or check other tests'
        # packs, which live in other storage.
        MUSEHUB_GC_RECONCILE="false",
        MUSEHUB_GC_VERIFY_MAX_PACKS="0",
    )
    hosts = []
    for name in ("host-a", "host-b"):
        state_dir = tmp_path / name
        state_dir.mkdir()
        settings = load_settings(state_dir=state_dir, storage=s3_storage_settings(moto_s3, bucket))
        hosts.append(Host(name, state_dir, shared | storage_environment(settings) | READS))
    try:
        for host in hosts:
            host.start_api()
            host.start_worker()
        await asyncio.gather(*(asyncio.to_thread(host.wait_until_serving) for host in hosts))
        yield Site(hosts[0], hosts[1], bucket, shared)
    finally:
        await asyncio.gather(*(asyncio.to_thread(host.stop) for host in hosts))
        schedule = temporal_env.client.get_schedule_handle(shared["MUSEHUB_GC_SCHEDULE_ID"])
        with contextlib.suppress(RPCError):  # no worker got as far as creating it
            await schedule.delete()


async def test_a_build_survives_its_host_and_leaves_nothing_behind(
    site: Site, db_engine: AsyncEngine, temporal_env: WorkflowEnvironment, moto_s3: MotoS3
) -> None:
    owner, slug, token = await new_repo(db_engine)
    repo = generate_repo(COMMITS, FILES, FILE_SIZE, 1, seed=14, blobs=BLOBS)
    async with MuseRemote(f"{site.a.api_url}/{owner}/{slug}", token) as remote:
        await push_synth(remote, repo)
        refs = await remote.refs()
    tip = refs.branch_heads["main"]
    workflow = temporal_env.client.get_workflow_handle(prebuild_workflow_id(refs.repo_id))

    async def assembling() -> Host | None:
        return next((host for host in site.hosts if host.assembling()), None)

    claimer = await wait_for(assembling, "a worker to assemble the pack")
    claimer.kill("worker")

    clones: Counter[str] = Counter()
    cloning = asyncio.create_task(clone_until_cancelled(site.hosts, owner, slug, tip, clones))
    try:
        status = await wait_for(lambda: built(workflow), "the other worker's build", within=90)
    finally:
        cloning.cancel()
        (ended,) = await asyncio.gather(cloning, return_exceptions=True)
    if isinstance(ended, Exception):  # a clone that failed (a cancel is no Exception)
        raise ended
    # Its claimer died assembling: the one build that finished is the other host's.
    assert (status.built, status.last_error) == (1, None), status
    assert sum(clones.values()) >= 2, clones  # clones were asked while it ran ...
    assert set(clones) <= {"HIT", "MISS"}, clones  # ... and each was answered and checked out

    # An orchestrator starts the killed worker again: at start it sweeps its dead folder.
    claimer.start_worker()
    await asyncio.to_thread(claimer.wait_until_serving)
    # An hour on, GC's grace periods are over for everything the push and the builds wrote.
    for key in bucket_keys(moto_s3, site.bucket):
        age_in_moto(site.bucket, key, timedelta(hours=2))
    await musehub_gc(site.environment | site.a.environment)

    keys = bucket_keys(moto_s3, site.bucket)
    stored = {k: size for k, size in keys.items() if k.startswith("mpacks/")}
    packs = {k: size for k, size in stored.items() if not k.endswith(".zst")}
    assert set(packs) == await named_packs(db_engine, refs.repo_id, [tip])
    assert {k.removesuffix(".zst") for k in stored if k.endswith(".zst")} <= set(packs)
    assert max(packs.values()) > PART_SIZE  # uploaded in parts
    assert {k for k in keys if not k.startswith(("mpacks/", "objects/"))} == set()
    unfinished = moto_s3.client().list_multipart_uploads(Bucket=site.bucket)
    assert unfinished.get("Uploads", []) == []
    for host in site.hosts:
        assert len(list(host.staging_root.glob("worker-*"))) == 1  # its live worker's own ...
        assert sweep_abandoned(host.staging_root) == 0  # ... and no dead worker's
        assert host.build_folders() == set()  # no build left behind either
    # A live worker's builds are its own to clean up: stopped, it leaves nothing at all.
    await asyncio.gather(*(asyncio.to_thread(host.stop) for host in site.hosts))
    for host in site.hosts:
        assert list(host.staging_root.iterdir()) == []


async def new_repo(engine: AsyncEngine) -> tuple[str, str, str]:
    owner, slug = f"user{uuid.uuid4().hex[:10]}", f"big{uuid.uuid4().hex[:8]}"
    async with AsyncSession(engine) as session:
        await create_repo(session, owner, slug)
        token = await create_token(session, owner)
        await session.commit()
    return owner, slug, token


async def clone_until_cancelled(
    hosts: tuple[Host, Host], owner: str, slug: str, tip: str, answers: Counter[str]
) -> None:
    """Clone, one after another, from each API in turn, by URL and inline: every answer must
    be a whole pack of the tip's history."""
    forms = itertools.cycle([["mpack-url"], [], ["mpack-url"], []])
    async with httpx.AsyncClient(timeout=60) as http:
        for host, capabilities in zip(itertools.cycle(hosts), forms, strict=False):
            body = {"want": [tip], "have": [], "capabilities": capabilities}
            response = await http.post(
                f"{host.api_url}/{owner}/{slug}/fetch",
                content=msgpack.packb(body),
                headers=HEADERS,
            )
            assert response.status_code == 200, (host.name, response.text)
            pack = response.content
            answer = msgpack.unpackb(pack) if capabilities else {}
            if "mpack_url" in answer:  # else a build still running, streamed inline to all
                pack = (await http.get(answer["mpack_url"])).content
                assert hashlib.sha256(pack).hexdigest() == answer["mpack_sha256"]
            assert tip in {c["commit_id"] for c in read_mpack(io.BytesIO(pack)).commits}
            answers[response.headers["x-musehub-cache"]] += 1


async def built(workflow: WorkflowHandle[Any, Any]) -> PrebuildStatus | None:
    """The prebuild's status once a build finished (or failed); None before, or while the
    query cannot be answered (its workflow task was on the killed worker)."""
    try:
        status = await workflow.query(STATUS_QUERY, result_type=PrebuildStatus)
    except (RPCError, WorkflowQueryFailedError):
        return None
    return status if status.built or status.last_error else None


async def named_packs(engine: AsyncEngine, repo_id: str, want: list[str]) -> set[str]:
    async with AsyncSession(engine) as session:
        entry = await mpack_cache.lookup(session, repo_id, want)
    assert entry is not None
    named = {part.mpack_id for part in entry.chain.parts} if entry.chain else set()
    return named | ({entry.mpack_id} if entry.mpack_id else set())


def bucket_keys(moto: MotoS3, bucket: str) -> dict[str, int]:
    """Every object in the bucket, with its size."""
    pages = moto.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {item["Key"]: item["Size"] for page in pages for item in page.get("Contents", [])}


async def musehub_gc(environment: dict[str, str]) -> None:
    """`musehub gc` as an operator runs it: starts the schedule's run, waits for its result."""
    process = await asyncio.create_subprocess_exec(
        MUSEHUB, "gc", env=environment, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    assert b"gc run" in out, out.decode()


T = TypeVar("T")


async def wait_for(check: Callable[[], Awaitable[T | None]], what: str, within: float = 60) -> T:
    """What `check` gives once it gives something, asked every 50 ms."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if found := await check():
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
