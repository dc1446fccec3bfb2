from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import pytest

from tests.client.fake_hub import FakeHub

VECTOR = Path("/work/shared/vectors/two-branches-merge.mpack")


@pytest.fixture(scope="session")
def vector() -> dict[str, Any]:
    decoded: dict[str, Any] = msgpack.unpackb(VECTOR.read_bytes(), raw=False)
    return decoded


@pytest.fixture
def fake_hub(vector: dict[str, Any]) -> FakeHub:
    fake = FakeHub()
    fake.load_pack(vector)
    return fake
