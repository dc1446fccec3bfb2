"""The muse wire protocol under /{owner}/{slug}/: msgpack in and out, never a redirect.

Each route receives the repo it may act on (`ReadableRepo`, `PushableRepo`) and only then
reads its body, with a size limit that fits it. `POST /fetch`, the hot path, is a plain ASGI
endpoint of its own (`api/routes/fetch.py`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.deps import (
    FetchDep,
    PushableRepo,
    ReadableRepo,
    SessionDep,
    SettingsDep,
    StorageDep,
    TemporalDep,
)
from api.wire_io import id_list, id_list_body_limit, msgpack_response, read_msgpack_body
from musehub.metrics import PUSHES
from musehub.services import history, push
from musehub.services.errors import BadRequest, NotFound
from musehub.services.prebuild_trigger import prebuild_after_push
from musehub.services.repos import branch_heads

router = APIRouter(prefix="/{owner}/{slug}")

MAX_FILTER = 200_000
MAX_PUSH_OBJECTS = 1_000
MAX_NEGOTIATE_WANT = 10_000
MAX_NEGOTIATE_HAVE = 256


@router.get("/refs")
async def refs(repo: ReadableRepo, session: SessionDep) -> Response:
    return msgpack_response(
        {
            "repo_id": repo.repo_id,
            "domain": repo.domain,
            "default_branch": repo.default_branch,
            "branch_heads": await branch_heads(session, repo.repo_id),
        }
    )


@router.post("/filter-objects")
async def filter_objects(repo: PushableRepo, request: Request, session: SessionDep) -> Response:
    body = await read_msgpack_body(request, id_list_body_limit(MAX_FILTER))
    ids = id_list(body, "object_ids", max_items=MAX_FILTER, required=False)
    return msgpack_response({"missing": await push.missing_object_ids(session, repo.repo_id, ids)})


@router.post("/presign")
async def presign(
    repo: PushableRepo,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
) -> Response:
    body = await read_msgpack_body(request, id_list_body_limit(MAX_FILTER))
    if body.get("direction", "put") != "put":
        raise BadRequest("only direction 'put' is supported; fetch packs with POST /fetch")
    ids = id_list(body, "object_ids", max_items=MAX_FILTER, required=False)
    urls = await push.presign_uploads(
        session, storage, repo.repo_id, ids, settings.storage.presign_ttl_seconds
    )
    return msgpack_response({"presigned": urls, "inline": []})


@router.post("/push/objects")
async def push_objects(
    repo: PushableRepo,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
) -> Response:
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
    repo: PushableRepo,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    temporal: TemporalDep,
    fetch: FetchDep,
) -> Response:
    body = await read_msgpack_body(request, settings.api.max_body_bytes)
    parsed = push.parse_push(body)
    outcome = await push.apply_push(session, storage, repo, parsed, settings.work_dir)
    if outcome.old_head != outcome.new_head:
        enqueued = await prebuild_after_push(
            temporal,
            settings,
            repo_id=repo.repo_id,
            repo_name=f"{repo.owner}/{repo.slug}",
            tips=list(outcome.branch_heads.values()),
        )
        PUSHES.labels(prebuild_enqueued=str(enqueued).lower()).inc()
        fetch.forget_repo(repo.owner, repo.slug)
    return msgpack_response(
        {"ok": True, "message": outcome.message, "branch_heads": outcome.branch_heads}
    )


@router.post("/negotiate")
async def negotiate(repo: ReadableRepo, request: Request, session: SessionDep) -> Response:
    body = await read_msgpack_body(
        request, id_list_body_limit(MAX_NEGOTIATE_WANT + MAX_NEGOTIATE_HAVE)
    )
    want = id_list(body, "want", max_items=MAX_NEGOTIATE_WANT)
    have = id_list(body, "have", max_items=MAX_NEGOTIATE_HAVE, required=False)
    unknown = set(want) - await history.existing_commit_ids(session, repo.repo_id, want)
    if unknown:
        raise NotFound(
            f"commit {sorted(unknown)[0]} is not in {repo.owner}/{repo.slug} (refresh with /refs)"
        )
    known = await history.existing_commit_ids(session, repo.repo_id, have)
    ack = [c for c in dict.fromkeys(have) if c in known]
    base = await history.first_ancestor_of(session, repo.repo_id, ack, want) if ack else None
    return msgpack_response({"ack": ack, "common_base": base, "ready": base is not None})
