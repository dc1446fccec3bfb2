"""Names and paths a client could be hurt by are refused with a 400 that names them and the
rule (issue 12, item 7): a trailing newline no longer slips past `$`, and manifest paths that
a checkout would write outside the tree, into `.muse`, or as something that looks different
are refused at push."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr

from api.deps import parts_of
from musehub.names import branch_name_problem, manifest_path_problem
from musehub.services.tokens import authenticate, token_id_of
from tests.conftest import Hub
from tests.mpack.helpers import make_commit, make_object, make_snapshot
from tests.wire.helpers import call, decode

pytestmark = pytest.mark.local_storage_only("name rules, checked before storage is touched")

ADMIN = "operator-secret-names"
OBJECT = make_object(b"content\n")


@pytest.fixture
async def operator(hub: Hub) -> AsyncIterator[dict[str, str]]:
    hub.settings.api.admin_token = SecretStr(ADMIN)
    try:
        yield {"Authorization": f"Bearer {ADMIN}"}
    finally:
        hub.settings.api.admin_token = None


def _unique() -> str:
    return f"n{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize("suffix", ["\n", "\r\n", "\t", " "])
async def test_user_and_repo_names_with_a_trailing_newline_are_400(
    hub: Hub, operator: dict[str, str], suffix: str
) -> None:
    owner = _unique()
    bad_owner = await hub.client.post(
        "/api/repos", headers=operator, json={"owner": owner + suffix, "slug": "pub"}
    )
    assert bad_owner.status_code == 400, bad_owner.text
    assert "user name" in bad_owner.text
    bad_slug = await hub.client.post(
        "/api/repos", headers=operator, json={"owner": owner, "slug": "pub" + suffix}
    )
    assert bad_slug.status_code == 400, bad_slug.text
    assert "repository name" in bad_slug.text
    bad_user = await hub.client.post("/api/tokens", headers=operator, json={"user": owner + suffix})
    assert bad_user.status_code == 400, bad_user.text
    assert "user name" in bad_user.text


async def test_a_token_with_a_trailing_newline_is_not_a_token(hub: Hub) -> None:
    _, _, token = await hub.create_repo()
    async with parts_of(hub.app).sessions() as session:
        assert await authenticate(session, token) is not None
        assert await authenticate(session, token + "\n") is None
    assert token_id_of(token + "\n") is None
    assert token_id_of(token.split("_")[1] + "\n") is None


def _bundle(manifest: dict[str, str], branch: str = "main") -> dict[str, Any]:
    snapshot = make_snapshot(manifest)
    commit = make_commit(snapshot["snapshot_id"], branch=branch)
    return {"commits": [commit], "snapshots": [snapshot], "objects": []}


async def _push(hub: Hub, bundle: dict[str, Any], branch: str = "main") -> Any:
    owner, slug, token = await hub.create_repo()
    decode(await call(hub.client, owner, slug, "push/objects", {"objects": [OBJECT]}, token))
    body = {"bundle": bundle, "branch": branch}
    response = await call(hub.client, owner, slug, "push", body, token)
    return response, owner, slug


@pytest.mark.parametrize(
    "branch",
    [
        "main\n",
        "main\r",
        "ma\u202ein",  # RIGHT-TO-LEFT OVERRIDE
        "ma\u200bin",  # ZERO WIDTH SPACE
        "\ufeffmain",  # BYTE ORDER MARK
        "ma\u00a0in",  # NO-BREAK SPACE
        "ma\u2028in",  # LINE SEPARATOR
        "x.lock",
        ".hidden",
        "feature/.x",
        "ends.",
        "a\\b",
    ],
)
async def test_unsafe_branch_names_are_400(hub: Hub, branch: str) -> None:
    response, owner, slug = await _push(hub, _bundle({"a.txt": OBJECT["object_id"]}), branch)
    assert response.status_code == 400, response.text
    assert "branch name" in response.text and "must" in response.text
    assert decode(await call(hub.client, owner, slug, "refs"))["branch_heads"] == {}


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        (".", "'.' segment"),
        ("a/./b", "'.' segment"),
        (".muse/refs/heads/main", "'.muse' segment"),
        (".MUSE/HEAD", "'.muse' segment"),
        ("sub/.muse/HEAD", "'.muse' segment"),
        ("a\\b", "backslash"),
        ("..\\evil", "backslash"),
        ("a\nb", "U+000A"),
        ("a.txt\n", "U+000A"),
        ("a\rb", "U+000D"),
        ("a\x1bb", "U+001B"),
        ("a\x7fb", "U+007F"),
        ("a\x85b", "U+0085"),
        ("a\x00b", "NUL"),
        ("/etc/passwd", "relative"),
        ("C:/Windows/x", "drive letter"),
        ("c:x", "drive letter"),
        ("../x", "'..' segment"),
        ("a/../../b", "'..' segment"),
        ("a//b", "empty segment"),
        ("dir/", "empty segment"),
        ("", "empty"),
        ("evil\u202etxt.exe", "U+202E"),
        ("a\u200bb", "U+200B"),
        ("a\u2066b", "U+2066"),
        ("a\u2029b", "U+2029"),
        ("x" * 256, "over 255 bytes"),
        ("d/" * 2100 + "f", "at most 4096 bytes"),
    ],
)
async def test_unsafe_manifest_paths_are_400_naming_path_and_rule(
    hub: Hub, path: str, rule: str
) -> None:
    manifest = {"fine.txt": OBJECT["object_id"], path: OBJECT["object_id"]}
    response, owner, slug = await _push(hub, _bundle(manifest))
    assert response.status_code == 400, response.text
    assert "manifest path" in response.text and rule in response.text
    assert repr(path)[:20] in response.text  # the path, escaped so it prints as one line
    assert "\n" not in response.text.strip()
    assert decode(await call(hub.client, owner, slug, "refs"))["branch_heads"] == {}


async def test_ordinary_paths_and_branches_still_push(hub: Hub) -> None:
    paths = [
        "README.md",
        ".gitignore",
        "dir/.museignore",
        "..hidden",
        "a..b/c",
        "My Song (final).mid",
        "é/ü/日本語.txt",
        "d/" * 100 + "deep.txt",
        "x" * 255,
        "emoji-🎵.mid",
    ]
    bundle = _bundle({p: OBJECT["object_id"] for p in paths}, branch="feature/mpack-2")
    response, _, _ = await _push(hub, bundle, "feature/mpack-2")
    assert decode(response)["ok"] is True


def test_the_shared_rules_directly() -> None:
    assert manifest_path_problem("src/main.py") is None
    assert manifest_path_problem(".muse") is not None
    assert branch_name_problem("release/0.2") is None
    assert branch_name_problem("main\n") is not None
