from __future__ import annotations

from typing import Any

import pytest

from tests.client.fake_hub import FakeHub
from tests.mpack.helpers import VECTOR_PATH, load_vector

VECTOR = VECTOR_PATH


@pytest.fixture(scope="session")
def vector() -> dict[str, Any]:
    return load_vector()


@pytest.fixture
def fake_hub(vector: dict[str, Any]) -> FakeHub:
    fake = FakeHub()
    fake.load_pack(vector)
    return fake
