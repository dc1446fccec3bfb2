"""The muse wire protocol under /{owner}/{slug}/: msgpack in and out, never a redirect."""

from __future__ import annotations

import time
from dataclasses import replace

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import State

from api.auth import UserDep, current_user
from api.deps import SessionDep, SettingsDep, StorageDep
from api.wire_io import MSGPACK, id_list, msgpack_response, read_msgpack_body
from musehub.metrics import BUILD_BYTES, BUILD_SECONDS, FETCH_SECONDS, FETCHES, PUSHES
from musehub.mpack.inline import ainline_answer, branch_heads_trailer
from musehub.services import history, push
from musehub.services.clone_lookup import CloneLookup, lookup_clone
from musehub.services.errors import BadRequest, NotFound
from musehub.services.fetch import (
    FetchMPack,
    log_fetch_outcome,
    serve_warm_clone,
    wire_fetch_mpack,
)
from musehub.services.prebuild_trigger import prebuild_after_push
from musehub.services.repos import (
    branch_heads,
    is_readable,
    not_found,
    repo_for_push,
    repo_for_read,
)

router = APIRouter(prefix="/{owner}/{slug}")

# Tells operators and benchmarks whether a fetch was answered from the prebuilt-pack cache.
CACHE_HEADER = "X-Musehub-Cache"
MAX_WANT = 10_000
MAX_HAVE = 1_000_000  # muse fetch sends every local commit id
MAX_FILTER = 200_000
MAX_PUSH_OBJECTS = 1_000
MAX_NEGOTIATE_HAVE = 256


@router.get("/refs")
async def refs(owner: str, slug: str, session: SessionDep, user: UserDep) -> Response:
    repo = await repo_for_read(session, owner, slug, user)
    return msgpack_response(
        {
            "repo_id": repo.repo_id,
            "domain": repo.domain,
            "default_branch": repo.default_branch,
            "branch_heads": await branch_heads(session, repo.repo_id),
        }
    )


@router.post("/filter-objects")
async def filter_objects(
    owner: str,
    slug: str,
    request: Request,
    session: SessionDep,
    user: UserDep,
    settings: SettingsDep,
) -> Response:
    repo = await repo_for_push(session, owner, slug, user)
    body = await read_msgpack_body(request, settings.api.max_body_bytes)
    ids = id_list(body, "object_ids", max_items=MAX_FILTER, required=False)
    return msgpack_response({"missing": await push.missing_object_ids(session, repo.repo_id, ids)})


@router.post("/presign")
async def presign(
    owner: str,
    slug: str,
    request: Request,
    session: SessionDep,
    user: UserDep,
    settings: SettingsDep,
    storage: StorageDep,
) -> Response:
    repo = await repo_for_push(session, owner, slug, user)
    body = await read_msgpack_body(request, settings.api.max_body_bytes)
    if body.get("direction", "put") != "put":
        raise BadRequest("only direction 'put' is supported; fetch packs with POST /fetch")
    ids = id_list(body, "object_ids", max_items=MAX_FILTER, required=False)
    urls = await push.presign_uploads(
        session, storage, repo.repo_id, ids, settings.storage.presign_ttl_seconds
    )
    return msgpack_response({"presigned": urls, "inline": []})


@router.post("/push/objects")
async def push_objects(
    owner: str,
    slug: str,
    request: Request,
    session: SessionDep,
    user: UserDep,
    settings: SettingsDep,
    storage: StorageDep,
) -> Response:
    repo = await repo_for_push(session, owner, slug, user)
    body = await read_msgpack_body(request, settings.api.max_body_bytes)
    objects = body.get("objects")
    if not isinstance(objects, list):
        raise BadRequest("'objects' must be a list of {object_id, content} maps")
    if len(objects) > MAX_PUSH_OBJECTS:
        raise BadRequest(f"{len(objects)} objects in one request; send at most {MAX_PUSH_OBJECTS}")
    stored, skipped = await push.store_objects(session, storage, repo.repo_id, objects)
    return msgpack_response({"stored": stored, "skipped": skipped})


@router.post("/push")
async def push_bundle(
    owner: str,
    slug: str,
    request: Request,
    session: SessionDep,
    user: UserDep,
    settings: SettingsDep,
    storage: StorageDep,
) -> Response:
    repo = await repo_for_push(session, owner, slug, user)
    body = await read_msgpack_body(request, settings.api.max_body_bytes)
    parsed = push.parse_push(body)
    outcome = await push.apply_push(session, storage, repo, parsed, settings.work_dir)
    if outcome.old_head != outcome.new_head:
        enqueued = await prebuild_after_push(
            request.app.state.temporal,
            settings,
            repo_id=repo.repo_id,
            repo_name=f"{repo.owner}/{repo.slug}",
            tips=list(outcome.branch_heads.values()),
        )
        PUSHES.labels(prebuild_enqueued=str(enqueued).lower()).inc()
        request.app.state.warm_answers.forget_repo(owner, slug)
    return msgpack_response(
        {"ok": True, "message": outcome.message, "branch_heads": outcome.branch_heads}
    )


@router.post("/negotiate")
async def negotiate(
    owner: str,
    slug: str,
    request: Request,
    session: SessionDep,
    user: UserDep,
    settings: SettingsDep,
) -> Response:
    repo = await repo_for_read(session, owner, slug, user)
    body = await read_msgpack_body(request, settings.api.max_body_bytes)
    want = id_list(body, "want", max_items=MAX_WANT)
    have = id_list(body, "have", max_items=MAX_NEGOTIATE_HAVE, required=False)
    unknown = set(want) - await history.existing_commit_ids(session, repo.repo_id, want)
    if unknown:
        raise NotFound(f"commit {sorted(unknown)[0]} is not in {owner}/{slug} (refresh with /refs)")
    known = await history.existing_commit_ids(session, repo.repo_id, have)
    ack = [c for c in dict.fromkeys(have) if c in known]
    base = await history.first_ancestor_of(session, repo.repo_id, ack, want) if ack else None
    return msgpack_response({"ack": ack, "common_base": base, "ready": base is not None})


@router.post("/fetch")
async def fetch(owner: str, slug: str, request: Request) -> Response:
    """The hottest endpoint, so it takes no FastAPI dependencies (resolving them cost more than
    a warm answer's own work) and its session connects only if the answer needs the database."""
    state = request.app.state
    settings, storage = state.settings, state.storage
    body = await read_msgpack_body(request, settings.api.max_body_bytes)
    want = sorted(set(id_list(body, "want", max_items=MAX_WANT)))
    have = id_list(body, "have", max_items=MAX_HAVE, required=False)
    capabilities = body.get("capabilities") or []
    if not isinstance(capabilities, list):
        raise BadRequest("'capabilities' must be a list of strings")
    started = time.perf_counter()
    async with state.session_factory() as session:
        user = await current_user(request, session)
        if have:
            repo = await repo_for_read(session, owner, slug, user)
            pack = await wire_fetch_mpack(
                session, repo.repo_id, want, have, storage=storage, settings=settings
            )
            heads = await branch_heads(session, repo.repo_id)
        else:
            pack, heads = await _clone_answer(request, session, owner, slug, want, user)
    _observe_fetch(pack, "url" if "mpack-url" in capabilities else "inline", started)
    if "mpack-url" in capabilities:
        return msgpack_response(
            {
                "mpack_url": pack.url,
                "mpack_size": pack.size,
                "mpack_sha256": pack.sha256,
                "expires_at": pack.expires_at.isoformat(),
                "branch_heads": heads,
            },
            headers={CACHE_HEADER: pack.cache},
        )
    # A legacy client: the stored pack streamed as is, with fresh branch heads appended.
    length = pack.size + len(branch_heads_trailer(heads))
    return StreamingResponse(
        ainline_answer(storage.stream(pack.mpack_key), heads),
        media_type=MSGPACK,
        headers={"Content-Length": str(length), CACHE_HEADER: pack.cache},
    )


async def _clone_answer(
    request: Request,
    session: AsyncSession,
    owner: str,
    slug: str,
    want: list[str],
    user: str | None,
) -> tuple[FetchMPack, dict[str, str]]:
    """A clone: answered from this process's recent answers, else from one database round
    trip (repo, prebuilt pack, heads) shared by the requests that arrive meanwhile, else built."""
    started = time.perf_counter()
    state = request.app.state
    found, pack = await state.warm_answers.get_or_look_up(
        owner, slug, want, lambda: _look_up_warm(state, owner, slug, want)
    )
    if found is None or not is_readable(found.owner, found.visibility, user):
        raise not_found(owner, slug)
    if pack is not None:
        log_fetch_outcome("HIT", found.repo_id, want, started)
        return pack, found.branch_heads
    pack = await wire_fetch_mpack(
        session, found.repo_id, want, [], storage=state.storage, settings=state.settings
    )
    # Just built (or found by a racing build): a live pack now answers this want set.
    state.warm_answers.put(owner, slug, want, found, replace(pack, cache="HIT"))
    return pack, found.branch_heads


async def _look_up_warm(
    state: State, owner: str, slug: str, want: list[str]
) -> tuple[CloneLookup | None, FetchMPack | None]:
    found = await lookup_clone(state.engine, owner, slug, want)
    if found is None:
        return None, None
    pack = await serve_warm_clone(
        found, sessions=state.session_factory, storage=state.storage, settings=state.settings
    )
    return found, pack


def _observe_fetch(pack: FetchMPack, form: str, started: float) -> None:
    elapsed = time.perf_counter() - started
    FETCHES.labels(cache=pack.cache, form=form).inc()
    FETCH_SECONDS.labels(cache=pack.cache).observe(elapsed)
    if pack.cache != "HIT":
        BUILD_SECONDS.labels(path="sync").observe(elapsed)
        BUILD_BYTES.labels(path="sync").inc(pack.size)
