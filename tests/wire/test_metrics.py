"""/metrics counts fetches by cache outcome and times them."""

from __future__ import annotations

import re

from tests.conftest import Hub
from tests.mpack.helpers import VECTOR_HEADS, load_vector
from tests.wire.helpers import call, decode, push_vector

VECTOR = load_vector()
MAIN = VECTOR_HEADS["main"]


def sample(text: str, name: str, **labels: str) -> float:
    label_text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    match = re.search(rf"^{name}\{{{label_text}\}} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


async def test_fetches_are_counted_by_cache_outcome(hub: Hub) -> None:
    owner, slug, _token, _repo_id = await push_vector(hub)
    before = (await hub.client.get("/metrics")).text
    body = {"want": [MAIN], "have": [], "capabilities": ["mpack-url"]}
    decode(await call(hub.client, owner, slug, "fetch", body))
    decode(await call(hub.client, owner, slug, "fetch", body))
    after = (await hub.client.get("/metrics")).text
    for cache in ("MISS", "HIT"):
        delta = sample(after, "musehub_fetch_total", cache=cache, form="url") - sample(
            before, "musehub_fetch_total", cache=cache, form="url"
        )
        assert delta == 1, cache
    assert sample(after, "musehub_fetch_seconds_count", cache="HIT") >= 1
    assert "musehub_mpack_build_seconds_bucket" in after
