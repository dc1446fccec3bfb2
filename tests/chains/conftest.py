"""The chain tests use the prebuild tests' hub: the API plus a real worker."""

from __future__ import annotations

from tests.prebuild.conftest import prebuild_hub

__all__ = ["prebuild_hub"]  # re-exported so pytest finds the fixture here
