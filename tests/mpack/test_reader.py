"""The streaming reader: real client packs, any key order, clear errors, bounded memory."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import msgpack
import pytest

from musehub.mpack.errors import MPackFormatError
from musehub.mpack.ids import object_id
from musehub.mpack.limits import MPackLimits
from musehub.mpack.reader import MPackItem, iter_mpack, read_mpack
from tests.mpack.helpers import (
    VECTOR_HEADS,
    VECTOR_PATH,
    VECTOR_SHA256,
    load_vector,
    make_object,
    write_pack,
)


def test_the_vector_is_the_pack_the_muse_client_wrote() -> None:
    assert hashlib.sha256(VECTOR_PATH.read_bytes()).hexdigest() == VECTOR_SHA256


def test_reads_the_real_clients_pack() -> None:
    with VECTOR_PATH.open("rb") as fp:
        contents = read_mpack(fp)
    assert len(contents.commits) == 5
    assert len(contents.snapshots) == 5
    assert len(contents.objects) == 7
    assert contents.branch_heads == VECTOR_HEADS
    assert {c["message"] for c in contents.commits} == {
        "first",
        "second",
        "extend lyrics",
        "add chorus",
        "merge chorus",
    }
    for obj in contents.objects:
        assert object_id(obj["content"]) == obj["object_id"]
    assert contents.commits == load_vector()["commits"]


def test_items_come_in_file_order() -> None:
    with VECTOR_PATH.open("rb") as fp:
        kinds = [item.kind for item in iter_mpack(fp)]
    assert kinds == ["commit"] * 5 + ["snapshot"] * 5 + ["object"] * 7 + ["branch_heads"]


def test_keys_in_any_order_and_unknown_keys_are_skipped() -> None:
    obj = make_object(b"x")
    pack = {
        "objects": [obj],
        "future": {"nested": [1, 2, {"deep": b"bin"}]},
        "branch_heads": {"main": "a" * 64},
        "commits": [],
    }
    items = list(iter_mpack(io.BytesIO(msgpack.packb(pack))))
    assert items == [
        MPackItem("object", obj),
        MPackItem("branch_heads", {"main": "a" * 64}),
    ]


def _pack(value: Any) -> bytes:
    return bytes(msgpack.packb(value, use_bin_type=True))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "at byte 0: the pack header: the data ends in the middle of a value"),
        (_pack([1, 2]), "at byte 0: the pack header must be a map of commits, snapshots"),
        (_pack({"commits": []}) + b"\x00", "at byte 10: there is trailing data"),
        (_pack({"commits": {}}), "the 'commits' section must be an array"),
        (_pack({"commits": [1]}), "commit #0 must be a map, got int"),
        (_pack({"snapshots": [{b"k": 1}]}), "snapshot #0 has a key that is not a string"),
        (_pack({1: []}), "a top-level key must be a string, got int"),
        (b"\x82" + _pack("commits") + b"\x90" + _pack("commits") + b"\x90", "appears twice"),
        (_pack({"objects": [{"object_id": "a", "content": "text"}]}), "'content' as msgpack bin"),
        (_pack({"objects": [{"content": b""}]}), "object #0 needs a string 'object_id'"),
        (_pack({"branch_heads": {"main": 1}}), "branch_heads must be a map of branch name"),
        (_pack({"branch_heads": []}), "branch_heads must be a map of branch name"),
        (b"\x81\xa7commits\x91\xc1", "commit #0: the bytes are not msgpack"),
        (b"\x81\xa7commits\x91\xa2\xff\xfe", "commit #0: a string is not valid UTF-8"),
        (b"\x81\xa7commits\x91" + b"\x91" * 5000, "commit #0: values are nested too deeply"),
        (_pack({"x": 1})[:-1], "the value of unknown key 'x': the data ends in the middle"),
    ],
)
def test_malformed_packs_raise_one_clear_error(raw: bytes, message: str) -> None:
    with pytest.raises(MPackFormatError) as info:
        list(iter_mpack(io.BytesIO(raw)))
    text = str(info.value)
    assert message in text
    assert text.startswith("malformed mpack at byte ")
    assert "\n" not in text


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (MPackLimits(max_bin_len=10), "exceeds max_bin_len(10)"),
        (MPackLimits(max_str_len=3), "exceeds max_str_len(3)"),
        (MPackLimits(max_array_len=1), "exceeds max_array_len(1)"),
        (MPackLimits(max_map_len=1), "exceeds max_map_len(1)"),
        (MPackLimits(max_buffer_size=50), "larger than the buffer limit"),
    ],
)
def test_limits_are_enforced(limits: MPackLimits, message: str) -> None:
    snap = {"snapshot_id": "s", "manifest": {"a": "b", "c": "d"}, "tags": [1, 2]}
    raw = _pack({"snapshots": [snap], "objects": [make_object(b"y" * 100)]})
    with pytest.raises(MPackFormatError, match=r"over a size limit|buffer limit") as info:
        read_mpack(io.BytesIO(raw), limits=limits)
    assert message in str(info.value)


class _CountingReader(io.RawIOBase):
    """A file that records how far it has been read, to prove the reader streams."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = self._data.readinto(buffer)
        self.position += count
        return count


def test_reader_streams_a_pack_bigger_than_its_buffer() -> None:
    objects = [make_object(bytes([i]) * (1024 * 1024)) for i in range(12)]
    raw, _ = write_pack([], [], objects)
    fp = _CountingReader(raw)
    limits = MPackLimits(max_buffer_size=2 * 1024 * 1024)
    items = iter_mpack(fp, limits=limits)  # type: ignore[arg-type]
    first = next(items)
    assert first.value == objects[0]
    assert fp.position < 4 * 1024 * 1024  # far less than the 12 MiB pack
    rest = list(items)
    assert [item.value["object_id"] for item in rest] == [o["object_id"] for o in objects[1:]]
    assert fp.position == len(raw)


def test_os_errors_from_the_file_are_not_format_errors() -> None:
    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        list(iter_mpack(Broken()))  # type: ignore[arg-type]
