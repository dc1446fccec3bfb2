"""Async HTTP client for the muse wire protocol (docs/wire-protocol.md).

It behaves like the muse 0.1.5 client where the protocol pins behaviour: msgpack bodies,
``Accept: application/x-msgpack, application/json`` on every request, every 2xx decoded as
msgpack (a non-map reads as ``{}``), redirects refused, 64 MiB answer cap, no token over
plain http except to loopback. It goes beyond it in two places: ``fetch`` asks for the
pack by URL (``capabilities: ["mpack-url"]``, and ``"mpack-chain"`` for a base and top-ups)
and streams an inline answer to a file; ``head_set_answer`` asks for every branch head with the
refs in the answer (``"mpack-refs"``), one round trip instead of two, for a clone and a pull.

Pass ``transport=httpx.ASGITransport(app)`` to talk to an in-process app in tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import re
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

import msgpack

from musehub.client.clone_request import ACCEPT, MSGPACK, REQUEST_TIMEOUT_S, head_set_body
from musehub.client.download import PackPart
from musehub.client.errors import RemoteError
from musehub.client.session import Response, http_errors, open_session

if TYPE_CHECKING:
    import httpx

    from musehub.client.early import EarlyRequest

MAX_BODY_BYTES = 64 * 1024 * 1024
OBJECTS_PER_REQUEST = 400
PARALLEL_REQUESTS = 4
MAX_OBJECTS_BODY_BYTES = 32 * 1024 * 1024
PRESIGNED_PUT_TIMEOUT_S = 300.0
# urllib sets this on a PUT with a body; presigned URLs must accept what the real client sends.
URLLIB_DEFAULT_CONTENT_TYPE = "application/x-www-form-urlencoded"
# A URL-form fetch answer is a few hundred bytes; anything bigger is an inline pack.
URL_ANSWER_MAX_BYTES = 1024 * 1024
ERROR_TEXT_CHARS = 400
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")

Record = dict[str, Any]


# The answers are NamedTuples, not frozen dataclasses: see download.PackPart.
class RemoteRefs(NamedTuple):
    """The ``GET /refs`` answer."""

    repo_id: str
    domain: str
    default_branch: str
    branch_heads: dict[str, str]


class MPackURL(NamedTuple):
    """A fetch answered by URL: the packs to download (plain GETs) and apply in order, each
    checked against its size and sha256: one pack (``mpack-url``), or a base and top-ups
    (``mpack-chain``)."""

    parts: tuple[PackPart, ...]
    branch_heads: dict[str, str]

    @property
    def size(self) -> int:
        """Bytes to download: every part."""
        return sum(part.size for part in self.parts)


class InlinePack(NamedTuple):
    """A fetch answered inline: the msgpack body, spooled to ``path`` (the caller deletes it)."""

    path: Path
    size: int


FetchAnswer = MPackURL | InlinePack


class PresignAnswer(NamedTuple):
    presigned: dict[str, str]
    inline: list[str]


class StoredCounts(NamedTuple):
    stored: int
    skipped: int


class MuseRemote:
    """One muse remote (``http://host/owner/slug``) spoken to over the wire protocol."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = REQUEST_TIMEOUT_S,
        early: EarlyRequest | None = None,
    ) -> None:
        """``early``: the clone's first request, already sent (``early.py``)."""
        self.base_url = base_url.rstrip("/")
        if token and transport is None:
            _refuse_token_over_plain_http(self.base_url)
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = open_session(
            transport, timeout=timeout, headers={"Accept": ACCEPT}, early=early
        )

    async def __aenter__(self) -> MuseRemote:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    def url(self, op: str) -> str:
        return f"{self.base_url}/{op}"

    # -- endpoints ---------------------------------------------------------------------

    async def refs(self) -> RemoteRefs:
        return _refs_of(await self._call("GET", "refs"))

    async def head_set_answer(
        self, capabilities: Sequence[str], have: Sequence[str] = ()
    ) -> tuple[RemoteRefs, MPackURL | None] | None:
        """A clone (or, with ``have``, a pull) in one round trip: ``POST /fetch`` for every
        branch head (``want: []``, ``mpack-refs``), answered by URL with the refs ``GET /refs``
        would give, which name exactly the heads the packs hold. The answer is None when there
        is nothing to fetch: no branches, or ``have`` holds every head. Returns None when the
        hub does not answer so: one without the capability refuses the empty ``want`` (4xx),
        one still building the pack streams it inline (left unread here); the caller then asks
        the old way, ``refs`` and ``fetch``."""
        body = head_set_body(capabilities, have)
        try:
            async with self._stream("POST", self.url("fetch"), body) as resp:
                declared = resp.headers.get("content-length")
                if not (declared and declared.isdigit() and int(declared) <= URL_ANSWER_MAX_BYTES):
                    return None  # an inline pack: the old way asks for it by URL
                answer = _decode_map(await _read_capped(resp, URL_ANSWER_MAX_BYTES))
        except RemoteError as exc:
            if 400 <= exc.status < 500:
                return None
            raise
        if "repo_id" not in answer:
            return None  # a hub that ignored the capability
        refs = _refs_of(answer)
        return refs, _url_answer_of(answer) if refs.branch_heads else None

    async def filter_objects(self, object_ids: Sequence[str]) -> list[str]:
        answer = await self._call("POST", "filter-objects", {"object_ids": list(object_ids)})
        return [str(i) for i in answer.get("missing") or []]

    async def presign_put(self, object_ids: Sequence[str]) -> PresignAnswer:
        body = {"object_ids": list(object_ids), "direction": "put"}
        answer = await self._call("POST", "presign", body)
        presigned = answer.get("presigned") or {}
        return PresignAnswer(
            presigned={str(k): str(v) for k, v in presigned.items()},
            inline=[str(i) for i in answer.get("inline") or []],
        )

    async def put_presigned(self, url: str, content: bytes) -> None:
        """PUT raw bytes to a presigned URL: no Authorization, urllib's Content-Type."""
        headers = {"Content-Type": URLLIB_DEFAULT_CONTENT_TYPE}
        try:
            async with self.http.stream(
                "PUT", url, content=content, headers=headers, timeout=PRESIGNED_PUT_TIMEOUT_S
            ) as resp:
                raw = await _read_capped(resp, 64 * 1024, truncate=True)
        except http_errors() as exc:
            raise RemoteError(0, f"cannot upload to presigned URL: {exc}") from exc
        _raise_for_status(resp, raw)

    async def push_objects(
        self,
        objects: Iterable[Mapping[str, Any]],
        *,
        per_request: int = OBJECTS_PER_REQUEST,
        parallel: int = PARALLEL_REQUESTS,
        max_body_bytes: int = MAX_OBJECTS_BODY_BYTES,
    ) -> StoredCounts:
        """Send ``{object_id, content}`` maps in chunks, ``parallel`` requests in flight.

        ``objects`` is consumed lazily, so at most ``parallel`` chunks are in memory.
        """
        stored = skipped = 0
        in_flight: set[asyncio.Task[Record]] = set()

        def tally(done: Iterable[asyncio.Task[Record]]) -> None:
            nonlocal stored, skipped
            for task in done:
                answer = task.result()
                stored += int(answer.get("stored") or 0)
                skipped += int(answer.get("skipped") or 0)

        try:
            for chunk in _chunks(objects, per_request, max_body_bytes):
                if len(in_flight) >= parallel:
                    done, in_flight = await asyncio.wait(
                        in_flight, return_when=asyncio.FIRST_COMPLETED
                    )
                    tally(done)
                body = {"objects": chunk}
                in_flight.add(asyncio.create_task(self._call("POST", "push/objects", body)))
            if in_flight:
                done, in_flight = await asyncio.wait(in_flight)
                tally(done)
        finally:
            for task in in_flight:  # only left over when a chunk failed
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
        return StoredCounts(stored=stored, skipped=skipped)

    async def push(self, bundle: Mapping[str, Any], branch: str, force: bool = False) -> Record:
        body = {"bundle": dict(bundle), "branch": branch, "force": force}
        return await self._call("POST", "push", body)

    async def fetch(
        self,
        want: Sequence[str],
        have: Sequence[str],
        capabilities: Sequence[str] = ("mpack-url",),
        *,
        spool_dir: Path | None = None,
        on_bytes: Callable[[int], None] | None = None,
    ) -> FetchAnswer:
        """``POST /fetch``; the body is spooled to a file so an inline pack never sits in RAM."""
        body: Record = {"want": list(want), "have": list(have)}
        if capabilities:
            body["capabilities"] = list(capabilities)
        fd, name = tempfile.mkstemp(prefix=".muse-fetch-", suffix=".mpack", dir=spool_dir)
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as fh:
                async with self._stream("POST", self.url("fetch"), body) as resp:
                    async for chunk in resp.aiter_bytes():
                        fh.write(chunk)
                        if on_bytes is not None:
                            on_bytes(len(chunk))
            return _classify_spool(path)
        except BaseException:
            _discard(path)
            raise

    # -- plumbing ----------------------------------------------------------------------

    async def _call(self, method: str, op: str, body: Any = None) -> Record:
        async with self._stream(method, self.url(op), body) as resp:
            raw = await _read_capped(resp, MAX_BODY_BYTES)
        return _decode_map(raw)

    @contextlib.asynccontextmanager
    async def _stream(self, method: str, url: str, body: Any) -> AsyncIterator[Response]:
        """Open a request and yield the response once it is known to be a 2xx."""
        headers = dict(self._auth)
        content = None
        if body is not None:
            content = msgpack.packb(body, use_bin_type=True)
            headers["Content-Type"] = MSGPACK
        try:
            async with self.http.stream(method, url, content=content, headers=headers) as resp:
                if not 200 <= resp.status_code < 300:
                    raw = await _read_capped(resp, 64 * 1024, truncate=True)
                    _raise_for_status(resp, raw)
                yield resp
        except http_errors() as exc:
            raise RemoteError(0, f"cannot reach {url}: {exc}") from exc


def _refuse_token_over_plain_http(base_url: str) -> None:
    parts = urlsplit(base_url)
    if parts.scheme != "https" and (parts.hostname or "") not in LOOPBACK_HOSTS:
        raise ValueError(
            f"refusing to send a token over {parts.scheme or 'plain'}:// to {parts.hostname}; "
            "use an https:// remote URL"
        )


async def _read_capped(resp: Response, cap: int, *, truncate: bool = False) -> bytes:
    declared = resp.headers.get("content-length")
    if not truncate and declared and declared.isdigit() and int(declared) > cap:
        raise RemoteError(resp.status_code, f"answer of {declared} bytes is over the {cap} cap")
    buf = bytearray()
    async for chunk in resp.aiter_bytes():
        buf += chunk
        if len(buf) > cap:
            if truncate:
                return bytes(buf[:cap])
            raise RemoteError(resp.status_code, f"answer is over the {cap} byte cap")
    return bytes(buf)


def _raise_for_status(resp: Response, raw: bytes) -> None:
    status = resp.status_code
    if 200 <= status < 300:
        return
    if 300 <= status < 400:
        where = resp.headers.get("location", "?")
        raise RemoteError(status, f"redirect to {where} refused; use the final URL as the remote")
    raise RemoteError(status, _error_text(resp, raw))


def _error_text(resp: Response, raw: bytes) -> str:
    """The server's own words, first 400 characters, unwrapping msgpack/JSON ``detail``."""
    ctype = resp.headers.get("content-type", "")
    decoded: Any = None
    with contextlib.suppress(Exception):
        if MSGPACK in ctype:
            decoded = msgpack.unpackb(raw, raw=False)
        elif "json" in ctype:
            decoded = json.loads(raw)
    if isinstance(decoded, dict):
        for key in ("message", "detail", "error"):
            if decoded.get(key):
                return str(decoded[key])[:ERROR_TEXT_CHARS]
    text = raw.decode("utf-8", errors="replace").strip()
    return (text or resp.reason_phrase or "no message")[:ERROR_TEXT_CHARS]


def _decode_map(raw: bytes) -> Record:
    try:
        decoded = msgpack.unpackb(raw, raw=False) if raw else {}
    except (ValueError, msgpack.UnpackException) as exc:
        raise RemoteError(0, f"Server returned invalid msgpack: {exc}") from exc
    return decoded if isinstance(decoded, dict) else {}


def _classify_spool(path: Path) -> FetchAnswer:
    """A spooled fetch answer is either a small URL-form map or an inline pack."""
    size = path.stat().st_size
    answer = _url_answer(path) if size <= URL_ANSWER_MAX_BYTES else None
    if answer is None:
        return InlinePack(path=path, size=size)
    path.unlink()
    return answer


def _discard(path: Path) -> None:
    path.unlink(missing_ok=True)


def _refs_of(answer: Record) -> RemoteRefs:
    heads = answer.get("branch_heads") or {}
    if not isinstance(heads, dict):
        raise RemoteError(0, "the hub's branch_heads is not a map; report it to its operator")
    return RemoteRefs(
        repo_id=str(answer.get("repo_id") or ""),
        domain=str(answer.get("domain") or "midi"),  # the real client's default
        default_branch=str(answer.get("default_branch") or "main"),
        branch_heads={str(b): str(c) for b, c in heads.items()},
    )


def _url_answer(path: Path) -> MPackURL | None:
    """Read a small fetch answer; ``None`` when it is an inline pack rather than URLs."""
    return _url_answer_of(_decode_map(path.read_bytes()))


def _url_answer_of(answer: Record) -> MPackURL | None:
    """The packs a fetch answer names; ``None`` when it names none. The chain form wins when
    the hub sent both (it does when the whole answer is one pack too)."""
    expires_at = _unix_time(answer.get("expires_at"))
    listed = answer.get("mpack_parts")
    if listed:
        if not isinstance(listed, list):
            raise RemoteError(0, "the hub's mpack_parts is not a list; report it to its operator")
        parts = tuple(_pack_part(p, expires_at) for p in listed)
    elif "mpack_url" in answer:
        one = {
            "url": answer["mpack_url"],
            "size": answer.get("mpack_size"),
            "sha256": answer.get("mpack_sha256"),
            "encoding": answer.get("mpack_encoding"),
            "decoded_size": answer.get("mpack_decoded_size"),
        }
        parts = (_pack_part(one, expires_at),)
    else:
        return None
    heads = answer.get("branch_heads") or {}
    return MPackURL(parts=parts, branch_heads={str(b): str(c) for b, c in heads.items()})


def _pack_part(listed: Any, expires_at: float | None) -> PackPart:
    """One ``{url, size, sha256}`` of an answer, or a ``RemoteError`` naming what is wrong."""
    url = listed.get("url") if isinstance(listed, dict) else None
    size = listed.get("size") if isinstance(listed, dict) else None
    sha256 = listed.get("sha256") if isinstance(listed, dict) else None
    if (
        not isinstance(url, str)
        or type(size) is not int
        or size < 0
        or not isinstance(sha256, str)
        or not _SHA256_RE.match(sha256)
    ):
        raise RemoteError(
            0,
            f"the hub answered a pack without a URL, size or sha256 ({listed!r:.200}); "
            "report it to its operator",
        )
    encoding = listed.get("encoding")
    decoded_size = listed.get("decoded_size")
    return PackPart(
        url,
        size,
        sha256,
        expires_at,
        encoding=None if encoding is None else str(encoding),
        decoded_size=decoded_size if type(decoded_size) is int else None,
    )


def _unix_time(iso: Any) -> float | None:
    try:
        return datetime.datetime.fromisoformat(str(iso)).timestamp()
    except ValueError:
        return None  # no expiry known: a 403 will say when the URL died


def _chunks(
    objects: Iterable[Mapping[str, Any]], per_request: int, max_body_bytes: int
) -> Iterator[list[Mapping[str, Any]]]:
    """Group objects so each request carries at most ``per_request`` and ~``max_body_bytes``."""
    chunk: list[Mapping[str, Any]] = []
    size = 0
    for obj in objects:
        weight = len(obj["content"]) + 96  # content plus id and msgpack framing
        if chunk and (len(chunk) >= per_request or size + weight > max_body_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(obj)
        size += weight
    if chunk:
        yield chunk
