"""A push whose objects went up by presigned PUT, as muse sends those over 64 KiB: the uploads are
checked (several at once) when `/push` arrives, and each is kept or refused on its own."""

from __future__ import annotations

from typing import Any

import msgpack

from tests.conftest import Hub
from tests.mpack.helpers import VECTOR_HEADS, load_vector
from tests.wire.helpers import HEADERS, call, decode, push_records

VECTOR = load_vector()
MAIN = VECTOR_HEADS["main"]
FORM = {"Content-Type": "application/x-www-form-urlencoded"}  # what urllib sends


def objects_of_main() -> list[dict[str, Any]]:
    needed = {oid for s in VECTOR["snapshots"] for oid in s["manifest"].values()}
    return [o for o in VECTOR["objects"] if o["object_id"] in needed]


async def test_uploads_are_checked_each_on_its_own(hub: Hub) -> None:
    owner, slug, token = await hub.create_repo()
    objects = objects_of_main()
    assert len(objects) >= 3
    ids = [o["object_id"] for o in objects]
    urls = decode(
        await call(
            hub.client, owner, slug, "presign", {"object_ids": ids, "direction": "put"}, token
        )
    )["presigned"]
    assert set(urls) == set(ids)
    never, wrong, *good = objects
    for obj in good:
        assert (
            await hub.client.put(urls[obj["object_id"]], content=obj["content"], headers=FORM)
        ).is_success
    await hub.client.put(urls[wrong["object_id"]], content=b"not these bytes", headers=FORM)

    refused = await push_records(
        hub.client,
        owner,
        slug,
        token,
        branch="main",
        tip=MAIN,
        commits=VECTOR["commits"],
        snapshots=VECTOR["snapshots"],
        objects=[],
    )

    assert refused.status_code == 400 and "2 object(s) missing" in refused.text
    missing = decode(
        await call(hub.client, owner, slug, "filter-objects", {"object_ids": ids}, token)
    )["missing"]
    assert sorted(missing) == sorted([never["object_id"], wrong["object_id"]])  # the good ones kept

    pushed = await push_records(
        hub.client,
        owner,
        slug,
        token,
        branch="main",
        tip=MAIN,
        commits=VECTOR["commits"],
        snapshots=VECTOR["snapshots"],
        objects=[never, wrong],
    )
    assert decode(pushed)["ok"] is True
    clone = await hub.client.post(
        f"/{owner}/{slug}/fetch",
        content=msgpack.packb({"want": [MAIN], "have": []}),
        headers=HEADERS,
    )
    served = {o["object_id"]: o["content"] for o in decode(clone)["objects"]}
    assert served == {o["object_id"]: o["content"] for o in objects}
