"""Streaming reader of a muse pack: one record at a time, never the whole pack in memory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Literal

import msgpack

from musehub.mpack.errors import MPackFormatError, explain_unpack_error
from musehub.mpack.limits import DEFAULT_LIMITS, MPackLimits

MPackKind = Literal["commit", "snapshot", "object", "branch_heads"]

_SECTION_KINDS: dict[str, MPackKind] = {
    "commits": "commit",
    "snapshots": "snapshot",
    "objects": "object",
}
_READ_SIZE = 1024 * 1024
_STR_ONLY = frozenset({str})  # msgpack gives exact types: str subclasses never come out


@dataclass(frozen=True, slots=True)
class MPackItem:
    """One record of a pack: a commit, snapshot or object map, or the branch_heads map."""

    kind: MPackKind
    value: dict[str, Any]


@dataclass(slots=True)
class MPackContents:
    commits: list[dict[str, Any]] = field(default_factory=list)
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    objects: list[dict[str, Any]] = field(default_factory=list)
    # None when the pack carries no branch_heads (the hub's stored packs never do).
    branch_heads: dict[str, str] | None = None


def iter_mpack(fp: BinaryIO, *, limits: MPackLimits = DEFAULT_LIMITS) -> Iterator[MPackItem]:
    """Yield the records of the pack read from `fp`, in file order.

    Accepts the top-level keys in any order, `branch_heads` as the muse client writes it, and
    skips unknown keys. Checks shape only (maps, strings, an object's bin content); use
    `records.validate_*` for ids. Raises MPackFormatError on malformed input; trailing data is
    found only once the iterator is exhausted.
    """
    stream = _Stream(fp, limits)
    seen: set[str] = set()
    for _ in range(stream.map_header("the pack header", "a map of commits, snapshots and objects")):
        key = stream.value("a top-level key")
        if not isinstance(key, str):
            raise stream.error(f"a top-level key must be a string, got {type(key).__name__}")
        if key in seen:
            raise stream.error(f"top-level key {key!r} appears twice")
        seen.add(key)
        if key in _SECTION_KINDS:
            yield from _iter_section(stream, key, _SECTION_KINDS[key])
        elif key == "branch_heads":
            yield MPackItem("branch_heads", _branch_heads(stream))
        else:
            stream.skip(f"the value of unknown key {key!r}")
    if not stream.at_end():
        raise stream.error("there is trailing data after the pack's map")


def read_mpack(fp: BinaryIO, *, limits: MPackLimits = DEFAULT_LIMITS) -> MPackContents:
    """Read a whole pack into lists (for tests and small packs)."""
    contents = MPackContents()
    for item in iter_mpack(fp, limits=limits):
        if item.kind == "commit":
            contents.commits.append(item.value)
        elif item.kind == "snapshot":
            contents.snapshots.append(item.value)
        elif item.kind == "object":
            contents.objects.append(item.value)
        else:
            contents.branch_heads = item.value
    return contents


def _iter_section(stream: _Stream, key: str, kind: MPackKind) -> Iterator[MPackItem]:
    count = stream.array_header(f"the {key!r} section", "an array")
    for index in range(count):
        record = stream.value(f"{kind} #{index}")
        if not isinstance(record, dict):
            raise stream.error(f"{kind} #{index} must be a map, got {type(record).__name__}")
        if not set(map(type, record)) <= _STR_ONLY:  # in C: a gabriel pack has 39,000 keys
            raise stream.error(f"{kind} #{index} has a key that is not a string")
        if kind == "object":
            _check_object(stream, index, record)
        yield MPackItem(kind, record)


def _check_object(stream: _Stream, index: int, record: dict[str, Any]) -> None:
    if not isinstance(record.get("object_id"), str):
        raise stream.error(f"object #{index} needs a string 'object_id'")
    if not isinstance(record.get("content"), bytes):
        raise stream.error(f"object #{index} needs its 'content' as msgpack bin")


def _branch_heads(stream: _Stream) -> dict[str, Any]:
    heads = stream.value("branch_heads")
    if not isinstance(heads, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in heads.items()
    ):
        raise stream.error("branch_heads must be a map of branch name to commit id")
    return heads


class _Stream:
    """A msgpack.Unpacker on a file whose every failure becomes one MPackFormatError."""

    def __init__(self, fp: BinaryIO, limits: MPackLimits) -> None:
        self._unpacker = msgpack.Unpacker(
            fp,
            max_buffer_size=limits.max_buffer_size,
            read_size=min(_READ_SIZE, limits.max_buffer_size),
            **limits.unpacker_options(),
        )
        self._offset = 0

    def error(self, problem: str) -> MPackFormatError:
        return MPackFormatError(f"malformed mpack at byte {self._offset}: {problem}")

    def map_header(self, what: str, expected: str) -> int:
        count: int = self._call(self._unpacker.read_map_header, what, expected)
        return count

    def array_header(self, what: str, expected: str) -> int:
        count: int = self._call(self._unpacker.read_array_header, what, expected)
        return count

    def value(self, what: str) -> Any:
        return self._call(self._unpacker.unpack, what)

    def skip(self, what: str) -> None:
        self._call(self._unpacker.skip, what)

    def at_end(self) -> bool:
        return self._call(lambda: self._unpacker.read_bytes(1), "the end of the pack") == b""

    def _call(self, read: Callable[[], Any], what: str, expected: str | None = None) -> Any:
        self._offset = self._unpacker.tell()
        try:
            return read()
        except OSError:
            raise
        # msgpack reports bad bytes with several exception types; callers must see only one.
        except Exception as exc:
            if expected is not None and "Unexpected type" in str(exc):
                raise self.error(f"{what} must be {expected}") from exc
            raise self.error(f"{what}: {explain_unpack_error(exc)}") from exc
