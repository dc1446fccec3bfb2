"""clone: URL and inline forms, verification, and a destination left as found on failure."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from musehub.client.clone import clone
from musehub.client.errors import CloneError
from tests.client.fake_hub import BASE, FakeHub
from tests.client.test_layout import CHORUS, MAIN


def _entries(path: Path) -> list[Path]:
    return list(path.iterdir())


def _assert_cloned(dest: Path, vector: dict[str, Any]) -> None:
    muse = dest / ".muse"
    assert (muse / "HEAD").read_text() == "refs/heads/main\n"
    assert (muse / "refs/heads/main").read_text() == MAIN
    assert (muse / "refs/heads/chorus").read_text() == CHORUS
    assert (muse / "remotes/origin/chorus").read_text() == CHORUS
    assert f'url = "{BASE}"' in (muse / "config.toml").read_text()
    assert json.loads((muse / "repo.json").read_text())["domain"] == "code"
    assert (dest / "lyrics.txt").read_bytes() == b"verse one\nverse two\n"
    assert (dest / "chorus.txt").read_bytes() == b"chorus line\n"
    assert len(list((muse / "commits").iterdir())) == len(vector["commits"])


@pytest.mark.parametrize("url_form", [True, False])
async def test_clone(
    fake_hub: FakeHub, vector: dict[str, Any], tmp_path: Path, url_form: bool
) -> None:
    fake_hub.mpack_url = url_form
    dest = tmp_path / "song"
    stderr = io.StringIO()
    result = await clone(BASE, dest, transport=fake_hub.transport(), stderr=stderr)
    assert result.via_url is url_form
    assert (result.commits, result.snapshots, result.objects, result.files) == (5, 5, 7, 5)
    assert result.default_branch == "main" and result.head_commit_id == MAIN
    _assert_cloned(dest, vector)
    first = fake_hub.seen[0]
    caps = ["mpack-chain", "mpack-url", "mpack-zstd"]
    assert first.body == {"want": [], "have": [], "capabilities": [*caps, "mpack-refs"]}
    if url_form:  # the refs came with the pack's URL: no GET /refs
        assert fake_hub.ops()[:1] == ["POST fetch"] and "GET refs" not in fake_hub.ops()
    else:  # a hub without URLs refused the empty want: asked as muse 0.1.5 asks
        assert fake_hub.ops() == ["POST fetch", "GET refs", "POST fetch"]
        fetch = fake_hub.seen[2]
        assert fetch.body == {"want": sorted({MAIN, CHORUS}), "have": [], "capabilities": caps}
    assert all("authorization" not in seen.headers for seen in fake_hub.seen)
    assert _entries(tmp_path) == [dest]  # no spooled pack left behind
    assert ("Downloading pack" in stderr.getvalue()) is url_form


async def test_clone_from_a_hub_without_refs_in_fetch(
    fake_hub: FakeHub, vector: dict[str, Any], tmp_path: Path
) -> None:
    """A hub from before `mpack-refs` refuses the empty want (400): the clone asks the old way,
    `GET /refs` then the heads by URL, and ends the same."""
    fake_hub.refs_in_fetch = False
    result = await clone(BASE, tmp_path / "song", transport=fake_hub.transport(), progress=False)
    assert result.via_url and result.head_commit_id == MAIN
    _assert_cloned(tmp_path / "song", vector)
    assert fake_hub.ops()[:3] == ["POST fetch", "GET refs", "POST fetch"]
    assert fake_hub.seen[2].body["want"] == sorted({MAIN, CHORUS})


async def test_clone_into_an_existing_empty_dir(fake_hub: FakeHub, tmp_path: Path) -> None:
    (tmp_path / "song").mkdir()
    await clone(BASE, tmp_path / "song", transport=fake_hub.transport(), progress=False)
    assert (tmp_path / "song" / ".muse" / "HEAD").is_file()


async def test_non_empty_destination_is_refused(fake_hub: FakeHub, tmp_path: Path) -> None:
    (tmp_path / "song").mkdir()
    (tmp_path / "song" / "notes.txt").write_text("mine")
    with pytest.raises(CloneError, match="not empty"):
        await clone(BASE, tmp_path / "song", transport=fake_hub.transport(), progress=False)
    assert [p.name for p in (tmp_path / "song").iterdir()] == ["notes.txt"]
    assert fake_hub.seen == []  # refused before any request


async def test_corrupt_download_fails_and_cleans_up(fake_hub: FakeHub, tmp_path: Path) -> None:
    fake_hub.corrupt_pack = True
    with pytest.raises(CloneError, match="sha256"):
        await clone(BASE, tmp_path / "song", transport=fake_hub.transport(), progress=False)
    assert _entries(tmp_path) == []


async def test_empty_remote_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CloneError, match="nothing to clone"):
        await clone(BASE, tmp_path / "x", transport=FakeHub().transport(), progress=False)
    assert not (tmp_path / "x").exists()


async def test_missing_default_branch_falls_back(fake_hub: FakeHub, tmp_path: Path) -> None:
    fake_hub.default_branch = "trunk"
    result = await clone(BASE, tmp_path / "s", transport=fake_hub.transport(), progress=False)
    assert result.default_branch == "chorus" and result.head_commit_id == CHORUS


async def test_a_broken_download_resumes_and_the_clone_is_whole(
    fake_hub: FakeHub, vector: dict[str, Any], tmp_path: Path
) -> None:
    fake_hub.break_pack_after = 1000
    await clone(BASE, tmp_path / "song", transport=fake_hub.transport(), progress=False)
    _assert_cloned(tmp_path / "song", vector)
    gets = [s for s in fake_hub.seen if s.path.startswith("/_pack/")]
    assert [g.headers.get("range", "").split("-")[0] for g in gets] == ["", "bytes=1000"]


async def test_an_expired_pack_url_is_replaced_by_a_new_fetch(
    fake_hub: FakeHub, vector: dict[str, Any], tmp_path: Path
) -> None:
    fake_hub.stale_answers = 1
    await clone(BASE, tmp_path / "song", transport=fake_hub.transport(), progress=False)
    _assert_cloned(tmp_path / "song", vector)
    assert fake_hub.ops().count("POST fetch") == 2


async def test_a_pack_with_a_forged_commit_is_refused(fake_hub: FakeHub, tmp_path: Path) -> None:
    commit = fake_hub.commits[MAIN]
    fake_hub.commits[MAIN] = {**commit, "message": commit["message"] + " (edited)"}
    with pytest.raises(CloneError, match="does not match its contents"):
        await clone(BASE, tmp_path / "song", transport=fake_hub.transport(), progress=False)
    assert _entries(tmp_path) == []
