"""An in-memory hub speaking the wire protocol over ``httpx.MockTransport``, for client tests.

It does what docs/wire-protocol.md says a server does, and no more; every request is recorded so
tests can check the sequence and headers the client sends.
"""

from __future__ import annotations

import hashlib
import io
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgpack

from musehub.mpack.codec import MPackWriter, inline_answer

BASE = "http://hub.test/alice/song"


@dataclass
class Seen:
    method: str
    path: str
    headers: httpx.Headers
    body: Any
    size: int  # request body bytes


@dataclass
class FakeHub:
    repo_id: str = "5d7f0c1e-0000-4000-8000-000000000001"
    domain: str = "code"
    default_branch: str = "main"
    mpack_url: bool = True  # honour capabilities: ["mpack-url"] (and mpack-chain, mpack-refs)
    refs_in_fetch: bool = True  # honour mpack-refs; False: refuse `want: []` as hubs before it
    presign: bool = True
    commits: dict[str, dict[str, Any]] = field(default_factory=dict)
    snapshots: dict[str, dict[str, Any]] = field(default_factory=dict)
    objects: dict[str, bytes] = field(default_factory=dict)
    heads: dict[str, str] = field(default_factory=dict)
    packs: dict[str, bytes] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    corrupt_pack: bool = False  # serve packs whose bytes differ from the promised sha256
    break_pack_after: int | None = None  # the next pack GET breaks after this many bytes
    stale_answers: int = 0  # this many URL answers come with an expires_at in the past
    chain_parts: int = 0  # answer `mpack-chain` clones with this many parts, oldest first
    part_faults: dict[int, str] = field(default_factory=dict)  # part -> corrupt|truncate|missing

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def load_pack(self, pack: dict[str, Any]) -> None:
        """Seed the hub from a decoded pack (e.g. the test vector)."""
        for c in pack["commits"]:
            self.commits[c["commit_id"]] = c
        for s in pack["snapshots"]:
            self.snapshots[s["snapshot_id"]] = s
        for o in pack["objects"]:
            self.objects[o["object_id"]] = o["content"]
        self.heads.update(pack["branch_heads"])

    def ops(self) -> list[str]:
        return [f"{s.method} {s.path.removeprefix('/alice/song/')}" for s in self.seen]

    # -- routing -------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        raw = request.content
        body = None
        if raw and request.headers.get("content-type") == "application/x-msgpack":
            body = msgpack.unpackb(raw, raw=False)
        path = request.url.path
        self.seen.append(Seen(request.method, path, request.headers, body or raw, len(raw)))
        if path.startswith("/_blob/"):
            self.objects[path.rsplit("/", 1)[1]] = raw
            return httpx.Response(200)
        if path.startswith("/_pack/"):
            data = self.packs.get(path.rsplit("/", 1)[1])
            if data is None:
                return httpx.Response(404, text="NoSuchKey")
            return self._pack_bytes(request, data)
        op = path.removeprefix("/alice/song/")
        handler = {
            ("GET", "refs"): self.refs,
            ("POST", "filter-objects"): self.filter_objects,
            ("POST", "presign"): self.presign_put,
            ("POST", "push/objects"): self.push_objects,
            ("POST", "push"): self.push,
            ("POST", "fetch"): self.fetch,
        }.get((request.method, op))
        if handler is None:
            return httpx.Response(404, text=f"no route {request.method} {path}")
        return handler(body or {})

    # -- endpoints -----------------------------------------------------------------------

    def refs(self, _: dict[str, Any]) -> httpx.Response:
        return _msgpack(
            {
                "repo_id": self.repo_id,
                "domain": self.domain,
                "default_branch": self.default_branch,
                "branch_heads": dict(self.heads),
            }
        )

    def filter_objects(self, body: dict[str, Any]) -> httpx.Response:
        return _msgpack({"missing": [i for i in body["object_ids"] if i not in self.objects]})

    def presign_put(self, body: dict[str, Any]) -> httpx.Response:
        if not self.presign:
            return _msgpack({"presigned": {}, "inline": body["object_ids"]})
        urls = {i: f"http://blobs.test/_blob/{i}" for i in body["object_ids"]}
        return _msgpack({"presigned": urls, "inline": []})

    def push_objects(self, body: dict[str, Any]) -> httpx.Response:
        stored = skipped = 0
        for o in body["objects"]:
            if hashlib.sha256(o["content"]).hexdigest() != o["object_id"]:
                return httpx.Response(400, text=f"object {o['object_id']} does not hash to its id")
            if o["object_id"] in self.objects:
                skipped += 1
            else:
                self.objects[o["object_id"]] = o["content"]
                stored += 1
        return _msgpack({"stored": stored, "skipped": skipped})

    def push(self, body: dict[str, Any]) -> httpx.Response:
        bundle, branch = body["bundle"], body["branch"]
        named = {
            p
            for c in bundle["commits"]
            for p in (c["parent_commit_id"], c["parent2_commit_id"])
            if p
        }
        tips = [c["commit_id"] for c in bundle["commits"] if c["commit_id"] not in named]
        if len(tips) != 1:
            return httpx.Response(400, text=f"bundle has {len(tips)} tips, expected one")
        for s in bundle["snapshots"]:
            lacking = [o for o in s["manifest"].values() if o not in self.objects]
            if lacking:
                return httpx.Response(400, text=f"objects not uploaded: {lacking[:3]}")
        for c in bundle["commits"]:
            self.commits[c["commit_id"]] = c
        for s in bundle["snapshots"]:
            self.snapshots[s["snapshot_id"]] = s
        old = self.heads.get(branch)
        if old and not body["force"] and old not in self._reachable([tips[0]], set()):
            return httpx.Response(409, text=f"non-fast-forward push to {branch}")
        self.heads[branch] = tips[0]
        return _msgpack({"ok": True, "message": "pushed", "branch_heads": dict(self.heads)})

    def fetch(self, body: dict[str, Any]) -> httpx.Response:
        capabilities = body.get("capabilities") or []
        if body["want"] == []:
            if not (self.refs_in_fetch and self.mpack_url and "mpack-refs" in capabilities):
                return httpx.Response(400, text="'want' must not be empty")  # a hub before it
            refs = self.refs_answer()
            heads = sorted(set(self.heads.values()))
            if set(heads) <= set(body.get("have") or []):  # no branches, or nothing new
                return _msgpack(refs)
            have = self._reachable(body.get("have") or [], set())
            return _msgpack(self._url_answer(heads, have, capabilities) | refs)
        have = self._reachable(body.get("have") or [], set())
        chain = self.chain_parts and "mpack-chain" in capabilities and not have
        if chain or (self.mpack_url and "mpack-url" in capabilities):
            return _msgpack(self._url_answer(body["want"], have, capabilities))
        pack = self._pack(sorted(self._reachable(body["want"], have)))
        content = b"".join(inline_answer([pack], self.heads))
        return httpx.Response(
            200, content=content, headers={"content-type": "application/x-msgpack"}
        )

    def refs_answer(self) -> dict[str, Any]:
        return {
            "repo_id": self.repo_id,
            "domain": self.domain,
            "default_branch": self.default_branch,
            "branch_heads": dict(self.heads),
        }

    def _url_answer(
        self, want: list[str], have: set[str], capabilities: list[str]
    ) -> dict[str, Any]:
        commit_ids = self._reachable(want, have)
        if self.chain_parts and "mpack-chain" in capabilities and not have:
            return self._chain_answer(self._oldest_first(commit_ids))
        pack = self._pack(sorted(commit_ids))
        sha = hashlib.sha256(pack).hexdigest()
        self.packs[sha] = pack
        return {
            "mpack_url": f"http://blobs.test/_pack/{sha}",
            "mpack_size": len(pack),
            "mpack_sha256": sha,
            "expires_at": self._expires_at(),
            "branch_heads": dict(self.heads),
        }

    def _expires_at(self) -> str:
        if self.stale_answers:
            self.stale_answers -= 1
            return "2001-01-01T00:00:00+00:00"
        return "2099-01-01T00:00:00+00:00"

    def _chain_answer(self, commit_ids: list[str]) -> dict[str, Any]:
        """The history cut into `chain_parts` packs, oldest first; each holds the snapshots and
        objects its commits name that no earlier part holds (a chain's top-ups)."""
        size = -(-len(commit_ids) // self.chain_parts)
        held: set[str] = set()
        parts = []
        for index, start in enumerate(range(0, len(commit_ids), size)):
            group = commit_ids[start : start + size]
            snap_ids = sorted({self.commits[c]["snapshot_id"] for c in group} - held)
            held |= set(snap_ids)
            names = {o for s in snap_ids for o in self.snapshots[s]["manifest"].values()}
            obj_ids = sorted(names - held)
            held |= names
            pack = self._pack_of(group, snap_ids, obj_ids)
            sha = hashlib.sha256(pack).hexdigest()
            fault = self.part_faults.get(index)
            if fault != "missing":
                stored = pack
                if fault == "corrupt":
                    stored = pack[:-1] + bytes([pack[-1] ^ 1])
                elif fault == "truncate":
                    stored = pack[: len(pack) // 2]
                self.packs[sha] = stored
            parts.append(
                {"url": f"http://blobs.test/_pack/{sha}", "size": len(pack), "sha256": sha}
            )
        return {
            "mpack_parts": parts,
            "mpack_size": sum(p["size"] for p in parts),
            "expires_at": self._expires_at(),
            "branch_heads": dict(self.heads),
        }

    def _oldest_first(self, commit_ids: set[str]) -> list[str]:
        """Parents before children (a chain's order), ties by id."""
        order: list[str] = []
        done: set[str] = set()
        for tip in sorted(commit_ids):
            stack = [(tip, False)]
            while stack:
                cid, expanded = stack.pop()
                if cid in done or cid not in commit_ids:
                    continue
                if expanded:
                    done.add(cid)
                    order.append(cid)
                    continue
                stack.append((cid, True))
                c = self.commits[cid]
                stack.extend(
                    (p, False) for p in (c["parent_commit_id"], c["parent2_commit_id"]) if p
                )
        return order

    # -- helpers -------------------------------------------------------------------------

    def _pack_bytes(self, request: httpx.Request, data: bytes) -> httpx.Response:
        """A storage GET: Range honoured, optionally corrupt, optionally cut off once."""
        if self.corrupt_pack:
            data = data[:-1] + b"\x00"
        status, headers = 200, {}
        wanted = request.headers.get("range")
        if wanted:
            first, last = wanted.removeprefix("bytes=").split("-")
            start, end = int(first), int(last) + 1
            if start >= len(data):
                return httpx.Response(416, text="InvalidRange")
            headers["content-range"] = f"bytes {start}-{end - 1}/{len(data)}"
            data, status = data[start:end], 206
        if self.break_pack_after is not None:
            head, self.break_pack_after = data[: self.break_pack_after], None
            return httpx.Response(status, headers=headers, stream=_BrokenBody(head))
        return httpx.Response(status, headers=headers, content=data)

    def _reachable(self, tips: list[str], stop: set[str]) -> set[str]:
        seen: set[str] = set()
        queue = deque(tips)
        while queue:
            cid = queue.popleft()
            if cid in seen or cid in stop or cid not in self.commits:
                continue
            seen.add(cid)
            c = self.commits[cid]
            queue.extend(p for p in (c["parent_commit_id"], c["parent2_commit_id"]) if p)
        return seen

    def _pack(self, commit_ids: list[str]) -> bytes:
        commits = [self.commits[c] for c in commit_ids]
        snap_ids = sorted({c["snapshot_id"] for c in commits})
        obj_ids = sorted({o for s in snap_ids for o in self.snapshots[s]["manifest"].values()})
        return self._pack_of(commit_ids, snap_ids, obj_ids)

    def _pack_of(self, commit_ids: list[str], snap_ids: list[str], obj_ids: list[str]) -> bytes:
        commits = [self.commits[c] for c in sorted(commit_ids)]
        out = io.BytesIO()
        writer = MPackWriter(out)
        writer.begin_section("commits", len(commits))
        for c in commits:
            writer.write_record(c)
        writer.begin_section("snapshots", len(snap_ids))
        for s in snap_ids:
            writer.write_record(self.snapshots[s])
        writer.begin_section("objects", len(obj_ids))
        for o in obj_ids:
            writer.write_object(o, self.objects[o])
        writer.finish()
        return out.getvalue()


class _BrokenBody(httpx.AsyncByteStream):
    """A body that stops with a connection error after its first bytes."""

    def __init__(self, head: bytes) -> None:
        self.head = head

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.head
        raise httpx.ReadError("connection reset by peer")


def _msgpack(value: Any) -> httpx.Response:
    return httpx.Response(
        200,
        content=msgpack.packb(value, use_bin_type=True),
        headers={"content-type": "application/x-msgpack"},
    )
