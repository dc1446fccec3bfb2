"""clone from a chain of packs (`mpack-chain`): the same files as a one-pack clone, records that
arrive in an earlier part than what needs them, and bad parts that fail cleanly."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from musehub.client.clone import clone
from musehub.client.errors import CloneError, DownloadError
from musehub.client.parts import stream_parts
from tests.chains.history import History
from tests.client.fake_hub import BASE, FakeHub


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` but ``repo.json`` (it records the clone's own time)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "repo.json"
    }


def hub_of(history: History, heads: dict[str, str]) -> FakeHub:
    hub = FakeHub()
    hub.commits.update(history.commits)
    hub.snapshots.update(history.snapshots)
    hub.objects.update({i: o["content"] for i, o in history.objects.items()})
    hub.heads.update(heads)
    return hub


@pytest.mark.parametrize("parts", [2, 5])
async def test_a_chain_clone_equals_a_one_pack_clone(
    vector: dict[str, Any], tmp_path: Path, parts: int
) -> None:
    one, chain = FakeHub(), FakeHub(chain_parts=parts)
    one.load_pack(vector)
    chain.load_pack(vector)
    await clone(BASE, tmp_path / "one", transport=one.transport(), progress=False)
    result = await clone(BASE, tmp_path / "chain", transport=chain.transport(), progress=False)
    part_gets = [s for s in chain.seen if s.path.startswith("/_pack/")]
    assert len(part_gets) == parts  # every part fetched, once
    assert (result.commits, result.snapshots, result.objects) == (5, 5, 7)  # counted once
    assert tree(tmp_path / "chain") == tree(tmp_path / "one")


async def test_the_head_tree_from_parts_before_the_head_commit(tmp_path: Path) -> None:
    """The head commit goes back to an older tree: its snapshot and every object it names are
    in earlier parts than the commit itself."""
    history = History()
    first = {f"song/{n}.mid": bytes([n]) * 3000 for n in range(6)}
    c1 = history.commit([], first)
    c2 = history.commit([c1], {"other.txt": b"something else"})
    c3 = history.commit([c2], first, message="back to the first tree")
    hub = hub_of(history, {"main": c3})
    hub.chain_parts = 3
    result = await clone(BASE, tmp_path / "song", transport=hub.transport(), progress=False)
    assert result.head_commit_id == c3 and result.files == len(first)
    work = {k: v for k, v in tree(tmp_path / "song").items() if not k.startswith(".muse")}
    assert work == first


async def test_each_part_resumes_and_refreshes_its_url(
    vector: dict[str, Any], tmp_path: Path
) -> None:
    hub = FakeHub(chain_parts=3, stale_answers=1, break_pack_after=100)
    hub.load_pack(vector)
    result = await clone(BASE, tmp_path / "song", transport=hub.transport(), progress=False)
    assert result.parts == 3 and result.commits == 5
    assert sum(s.path.endswith("/fetch") for s in hub.seen) == 2  # one refresh for all parts
    resumed = [s for s in hub.seen if s.headers.get("range", "").startswith("bytes=100-")]
    assert len(resumed) == 1  # the broken GET went on from byte 100, not from the start


@pytest.mark.parametrize("fault", ["corrupt", "truncate", "missing"])
@pytest.mark.parametrize("part", [0, 2])
async def test_a_bad_part_fails_the_clone_and_leaves_nothing(
    vector: dict[str, Any], tmp_path: Path, fault: str, part: int
) -> None:
    hub = FakeHub(chain_parts=3, part_faults={part: fault})
    hub.load_pack(vector)
    with pytest.raises(CloneError) as info:
        await clone(BASE, tmp_path / "song", transport=hub.transport(), progress=False)
    message = str(info.value)
    expected = {"corrupt": "sha256", "truncate": "HTTP 416", "missing": "HTTP 404"}[fault]
    # A corrupt part may be caught by the object hash before the part's own sha256.
    assert expected in message or (fault == "corrupt" and "corrupt" in message), message
    assert _entries(tmp_path) == []  # no checkout, no staging folder, no spool file


async def test_parts_are_handed_over_in_order_whatever_finishes_first(tmp_path: Path) -> None:
    """Small parts after a big one download ahead, but the decoder reads them in chain order."""
    import httpx

    from musehub.client.download import PackPart

    bodies = [bytes([n]) * size for n, size in enumerate([300_000, 10, 2_000, 50])]
    parts = [
        PackPart(f"http://blobs.test/{n}", len(b), hashlib.sha256(b).hexdigest())
        for n, b in enumerate(bodies)
    ]
    events: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        events.append(f"get {request.url.path[1:]}")
        return httpx.Response(200, content=bodies[int(request.url.path[1:])])

    def read_all(streams: Any) -> list[bytes]:
        out = []
        for n, fp in enumerate(streams):
            chunks = []
            while chunk := fp.read(65536):
                chunks.append(chunk)
            out.append(b"".join(chunks))
            events.append(f"read {n}")
        return out

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        got = await stream_parts(http, parts, read_all, ahead_bytes=1_000)
    assert got == bodies
    # Part 1 (10 bytes) was fetched ahead, while part 0 was read; part 2 (2,000 bytes) is more
    # than may wait ahead, so it started only once the decoder was done with part 0 (it was next
    # then), and part 3 (50 bytes, behind part 2's 2,000) only once it was done with part 1.
    assert events.index("get 1") < events.index("read 0")
    assert events.index("get 2") > events.index("read 0")
    assert events.index("get 3") > events.index("read 1")

    wrong = [*parts[:3], PackPart(parts[3].url, parts[3].size, "0" * 64)]
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        with pytest.raises(DownloadError, match="sha256"):
            await stream_parts(http, wrong, read_all)


async def test_the_part_after_the_one_decoded_starts_however_big_it_is() -> None:
    """Its pipe is bounded, so it may start at once: its first bytes do not wait for the
    decoder to finish the part before it (a round trip on a real link)."""
    import threading

    import httpx

    from musehub.client.download import PackPart

    bodies = [b"a" * 10, b"b" * 300_000]
    parts = [
        PackPart(f"http://blobs.test/{n}", len(b), hashlib.sha256(b).hexdigest())
        for n, b in enumerate(bodies)
    ]
    second_asked = threading.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/1":
            second_asked.set()
        return httpx.Response(200, content=bodies[int(request.url.path[1:])])

    def read_all(streams: Any) -> list[bool]:
        asked_while_in_the_first = []
        for fp in streams:
            while fp.read(65536):
                pass
            asked_while_in_the_first.append(second_asked.wait(timeout=5))
        return asked_while_in_the_first

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        asked = await stream_parts(http, parts, read_all, ahead_bytes=1_000)
    assert asked[0] is True  # requested before the decoder left part 0


async def test_a_chain_clone_writes_the_head_tree_as_its_objects_arrive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The base holds the head's files, the newest top-up its commit and snapshot: decoded
    newest first, the tree is known before the base's objects stream, and no file is copied
    from the object store at the end."""
    from musehub.client import unpack

    history = History()
    files = {f"song/{n}.mid": bytes([n]) * 3000 for n in range(6)}
    tip = history.commit([], files)
    for n in range(4):
        tip = history.commit([tip], {**files, "notes.txt": f"take {n}".encode()})
    hub = hub_of(history, {"main": tip})
    hub.chain_parts = 3
    copied: list[Path] = []
    real_copy = unpack._copy_work_files

    def copy(src: Path, paths: list[Path]) -> None:
        copied.extend(paths)
        real_copy(src, paths)

    monkeypatch.setattr(unpack, "_copy_work_files", copy)
    result = await clone(BASE, tmp_path / "song", transport=hub.transport(), progress=False)
    assert result.parts == 3 and result.files == len(files) + 1
    assert copied == []
    work = {k: v for k, v in tree(tmp_path / "song").items() if not k.startswith(".muse")}
    assert work == {**files, "notes.txt": b"take 3"}


def _entries(path: Path) -> list[Path]:
    return list(path.iterdir())


async def test_a_decoder_that_fails_while_no_part_downloads_stops_the_clone() -> None:
    """The next part waits for room ahead, nothing downloads: the decoder's error must still
    end the call (not leave it waiting for a turn that never comes)."""
    import asyncio

    import httpx

    from musehub.client.download import PackPart

    bodies = [b"x" * 10, b"y" * 5000]
    parts = [
        PackPart(f"http://blobs.test/{n}", len(b), hashlib.sha256(b).hexdigest())
        for n, b in enumerate(bodies)
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=bodies[int(request.url.path[1:])])

    def fail_after_first(streams: Any) -> None:
        first = next(streams)
        while first.read(65536):
            pass
        raise ValueError("the first part is not a pack")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        with pytest.raises(ValueError, match="not a pack"):
            await asyncio.wait_for(
                stream_parts(http, parts, fail_after_first, ahead_bytes=1_000), timeout=10
            )
