"""Storage key rules: what validate_key and validate_prefix accept."""

from __future__ import annotations

import pytest

from musehub.storage import InvalidStorageKey, validate_key, validate_prefix


@pytest.mark.parametrize(
    "key",
    ["a", "blobs/ab/cdef0123", "mpacks/sha256-abc.mpack", "A_b-c.d/9", "x" * 255, "a/" * 511 + "b"],
)
def test_good_keys(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/abs",
        "../x",
        "a/../b",
        "a/..",
        "./a",
        "a//b",
        "a/",
        ".tmp/x",
        "a\\b",
        "a b",
        "ü",
        "a\x00b",
        "x" * 256,
        "a/" * 512 + "b",
    ],
)
def test_bad_keys(key: str) -> None:
    with pytest.raises(InvalidStorageKey):
        validate_key(key)


def test_invalid_key_is_also_a_value_error() -> None:
    with pytest.raises(ValueError, match="relative"):
        validate_key("/etc/passwd")


@pytest.mark.parametrize("prefix", ["", "a", "a/", "mpacks/ab", "repos/x/objects/"])
def test_good_prefixes(prefix: str) -> None:
    assert validate_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["/", "/a", "../", "a//", "a/../", "a/.", ".tmp/"])
def test_bad_prefixes(prefix: str) -> None:
    with pytest.raises(InvalidStorageKey):
        validate_prefix(prefix)
