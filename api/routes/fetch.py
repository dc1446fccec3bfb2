"""`POST /{owner}/{slug}/fetch`: the hot path of every clone, as a plain ASGI endpoint.

Every other wire route is a FastAPI route with layered dependencies. This one is not: a warm
answer's own work is a dictionary lookup, and FastAPI's request machinery (dependency solving,
the endpoint wrapper, the Response object) cost several times that. It takes the same steps by
hand, in order: who is asking, the body, one call to `FetchMPacks.answer`, then one of the two
answer forms. Errors are raised as everywhere else and answered by the app's error handlers."""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgpack
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from api.deps import AppParts, parts_in, user_of
from api.wire_io import (
    MSGPACK,
    declared_length,
    decode_body,
    id_list,
    id_list_body_limit,
    read_body,
)
from musehub.mpack.chain import RangeReader, joined_size, joined_stream
from musehub.mpack.inline import INLINE_HEADER, ainline_answer, branch_heads_trailer
from musehub.services.errors import BadRequest
from musehub.services.fetch_answer import AnswerForm, FetchAnswer
from musehub.storage import ObjectStorage

# Tells operators and benchmarks whether a fetch was answered from the prebuilt-pack cache.
CACHE_HEADER = "X-Musehub-Cache"
MAX_WANT = 10_000
MAX_HAVE = 1_000_000  # muse fetch sends every local commit id
FETCH_BODY_LIMIT = id_list_body_limit(MAX_WANT + MAX_HAVE)
# Bodies up to this size are read before the repo is checked (a clone's want list is ~66 bytes
# per branch); larger ones, or ones of unknown size, only after.
SMALL_BODY_BYTES = 64 * 1024
# The client's capability for a clone or pull without `GET /refs` first (`_head_set_answer`).
REFS_CAPABILITY = "mpack-refs"
FETCH_PATH = "/{owner}/{slug}/fetch"
_FETCH_PATH_RE = re.compile(r"/([^/]+)/([^/]+)/fetch")
_MSGPACK_HEADER = (b"content-type", MSGPACK.encode())


class FetchEndpoint:
    """The endpoint as a plain ASGI app, for the router: errors reach the app's handlers
    through the middleware stack."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        respond = await _answer(scope, receive)
        await respond(send)


async def fetch_shortcut(
    scope: Scope, receive: Receive, send: Send, handlers: dict[Any, Any]
) -> None:
    """The endpoint for the app's shortcut past the middleware stack (`MuseHubApp`): errors are
    answered here with the app's own `handlers`, as ExceptionMiddleware would."""
    try:
        respond = await _answer(scope, receive)
    except Exception as exc:
        handler = next((handlers[c] for c in type(exc).__mro__ if c in handlers), None)
        if handler is None:
            raise  # uvicorn answers 500, as the middleware stack would
        response = await handler(Request(scope, receive), exc)
        await response(scope, receive, send)
        return
    await respond(send)  # nothing was sent before this point, so errors above are answered


def fetch_route() -> Route:
    return Route(FETCH_PATH, FetchEndpoint(), methods=["POST"])


def fetch_path_params(path: str) -> dict[str, str] | None:
    """{owner, slug} when `path` is a fetch, matched as the route's `{owner}/{slug}` are."""
    match = _FETCH_PATH_RE.fullmatch(path)
    return None if match is None else {"owner": match[1], "slug": match[2]}


async def _answer(scope: Scope, receive: Receive) -> Callable[[Send], Awaitable[None]]:
    """Everything up to the first byte of the answer; returns what sends it."""
    parts = parts_in(scope)
    params = scope["path_params"]
    request = Request(scope, receive)
    headers = _headers(scope, b"authorization", b"content-length")
    user = await _caller(parts, headers[b"authorization"])
    declared = declared_length(headers[b"content-length"])
    if declared is None or declared > SMALL_BODY_BYTES:
        # A pull's `have` list, or a body of unknown size: make sure the caller may read this
        # repo before reading it (a clone's small body is read first: the hot path asks the
        # database nothing when it answers from memory).
        await parts.fetch.check_readable(params["owner"], params["slug"], user)
    limit = min(FETCH_BODY_LIMIT, parts.settings.api.max_body_bytes)
    raw = await read_body(request, limit, declared=declared)
    asked = _parse_repeated(raw) if len(raw) <= REPEATED_BODY_BYTES else parse_fetch_request(raw)
    if asked.head_set:
        return await _head_set_answer(parts, scope, receive, asked, user)
    answer = await parts.fetch.answer(
        params["owner"],
        params["slug"],
        asked.want,
        asked.have,
        user,
        form=asked.form,
        zstd=asked.zstd,
    )
    if answer.growing is not None or asked.form == "inline":
        # A build still running is streamed inline, whatever the form.
        return lambda send: _inline_form(parts, answer)(scope, receive, send)
    body = _url_form(answer, asked)
    return lambda send: _send_msgpack(body, answer.cache, send)


async def _head_set_answer(
    parts: AppParts, scope: Scope, receive: Receive, asked: FetchRequest, user: str | None
) -> Callable[[Send], Awaitable[None]]:
    """`mpack-refs` with an empty `want`: the answer for every branch head (less what `have`
    holds, for a pull), with the refs `GET /refs` would give (they name exactly the heads the
    packs hold). A build still running is streamed inline without them: the client then asks
    the old way."""
    params = scope["path_params"]
    refs, answer = await parts.fetch.answer_head_set(
        params["owner"], params["slug"], user, have=asked.have, form=asked.form, zstd=asked.zstd
    )
    fields = {
        "repo_id": refs.repo_id,
        "domain": refs.domain,
        "default_branch": refs.default_branch,
        "branch_heads": refs.branch_heads,
    }
    if answer is None:  # no branches, or `have` holds every head: the refs say so
        return lambda send: _send_msgpack(msgpack.packb(fields), None, send)
    if answer.growing is not None:
        return lambda send: _inline_form(parts, answer)(scope, receive, send)
    body = answer.form_with(asked.form, fields, zstd=asked.zstd)
    return lambda send: _send_msgpack(body, answer.cache, send)


def _url_form(answer: FetchAnswer, asked: FetchRequest) -> bytes:
    if asked.form == "chain":
        return answer.zstd_chain_form if asked.zstd else answer.chain_form
    return answer.zstd_url_form if asked.zstd else answer.url_form


@dataclass(frozen=True)
class FetchRequest:
    want: tuple[str, ...]  # normalised: deduplicated, sorted
    have: tuple[str, ...]
    form: AnswerForm  # from the capabilities the client sent
    # `mpack-zstd`: URL forms may name zstd copies. Ignored for the inline form, whose bytes
    # are exactly what muse 0.1.5 reads.
    zstd: bool = False
    # `mpack-refs` and an empty `want`: every branch head (less `have`), with the refs.
    head_set: bool = False


def parse_fetch_request(raw: bytes) -> FetchRequest:
    body = decode_body(raw)
    capabilities = body.get("capabilities") or []
    if not isinstance(capabilities, list):
        raise BadRequest("'capabilities' must be a list of strings")
    head_set = REFS_CAPABILITY in capabilities and body.get("want") == []
    want = [] if head_set else id_list(body, "want", max_items=MAX_WANT)
    have = id_list(body, "have", max_items=MAX_HAVE, required=False)
    form: AnswerForm = "inline"
    if "mpack-chain" in capabilities:
        form = "chain"
    elif "mpack-url" in capabilities:
        form = "url"
    if head_set and form == "inline":
        raise BadRequest(
            "an empty 'want' with mpack-refs asks for every branch head with the refs beside "
            "the packs: send mpack-url or mpack-chain too, or list the commits you want"
        )
    zstd = "mpack-zstd" in capabilities and form != "inline"
    return FetchRequest(tuple(sorted(set(want))), tuple(have), form, zstd, head_set)


# Every client cloning a repo sends the same small body (its heads), again and again: such
# bodies are decoded and checked once. Bounded: 1,024 bodies of at most 4 KiB. A bad body
# raises, and is not kept.
REPEATED_BODY_BYTES = 4096
_parse_repeated = functools.lru_cache(maxsize=1024)(parse_fetch_request)


def _headers(scope: Scope, *names: bytes) -> dict[bytes, str | None]:
    """The named request headers in one pass over the raw list (Starlette's Headers raises and
    catches a KeyError for each absent one)."""
    found: dict[bytes, str | None] = dict.fromkeys(names)
    for name, value in scope["headers"]:
        if name in found:
            found[name] = value.decode("latin-1")
    return found


async def _caller(parts: AppParts, header: str | None) -> str | None:
    """The token's user; no database work at all for an anonymous clone."""
    if not header:
        return None
    async with parts.sessions() as session:
        return await user_of(header, session)


async def _send_msgpack(body: bytes, cache: str | None, send: Send) -> None:
    headers = [_MSGPACK_HEADER, (b"content-length", str(len(body)).encode())]
    if cache is not None:
        headers.append((b"x-musehub-cache", cache.encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _inline_form(parts: AppParts, answer: FetchAnswer) -> StreamingResponse:
    """A legacy client: the stored pack (or the chain's parts, joined by byte ranges, or the
    pack a build is writing) streamed as is, with fresh branch heads appended. No blob is
    read, nothing is re-encoded."""
    heads, storage = answer.branch_heads, parts.storage
    if answer.growing is not None:
        # Still being built: its length is not known yet, so the answer goes out chunked.
        return StreamingResponse(
            ainline_answer(answer.growing.chunks(), heads),
            media_type=MSGPACK,
            headers={CACHE_HEADER: answer.cache},
        )
    trailer = branch_heads_trailer(heads)
    body: AsyncIterator[bytes]
    if answer.pack is not None:
        body = ainline_answer(storage.stream(answer.pack.mpack_key), heads)
        length = answer.pack.size + len(trailer)
    else:
        assert answer.chain is not None  # an answer is one pack or a chain
        stored = [p.stored for p in answer.chain.parts]
        body = _with_trailer(joined_stream(stored, _range_reader(storage), INLINE_HEADER), trailer)
        length = joined_size(stored, INLINE_HEADER) + len(trailer)
    return StreamingResponse(
        body,
        media_type=MSGPACK,
        headers={"Content-Length": str(length), CACHE_HEADER: answer.cache},
    )


def _range_reader(storage: ObjectStorage) -> RangeReader:
    async def read(key: str, start: int, end: int) -> AsyncIterator[bytes]:
        async for chunk in storage.stream(key, start=start, end=end):
            yield chunk

    return read


async def _with_trailer(chunks: AsyncIterator[bytes], trailer: bytes) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        yield chunk
    yield trailer
