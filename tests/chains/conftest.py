"""The chain tests use the prebuild tests' hub: the API plus a real worker."""

from __future__ import annotations

import pytest

from tests.prebuild.conftest import PrebuildHub, prebuild_hub

__all__ = ["prebuild_hub"]  # re-exported so pytest finds the fixture here


@pytest.fixture
def small_chains(prebuild_hub: PrebuildHub):  # type: ignore[no-untyped-def]
    """Chains compacted past 3 parts, keeping the last top-up, joining only by count."""
    limits = prebuild_hub.settings.mpack
    saved = (limits.chain_compact_parts, limits.chain_keep_parts, limits.chain_compact_ratio)
    limits.chain_compact_parts, limits.chain_keep_parts, limits.chain_compact_ratio = 3, 1, 1e9
    yield prebuild_hub
    limits.chain_compact_parts, limits.chain_keep_parts, limits.chain_compact_ratio = saved
