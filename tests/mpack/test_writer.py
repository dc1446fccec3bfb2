"""The writer: round trips keep every field, output is deterministic, misuse is refused."""

from __future__ import annotations

import hashlib
import io
import time
from typing import Any

import msgpack
import pytest

from musehub.mpack.reader import read_mpack
from musehub.mpack.writer import MPackWriteError, MPackWriter
from tests.mpack.helpers import load_vector, make_object, small_repo, write_pack


def test_round_trip_keeps_every_field() -> None:
    commits, snapshots, objects = small_repo()
    raw, _ = write_pack(commits, snapshots, objects)
    contents = read_mpack(io.BytesIO(raw))
    assert contents.commits == commits
    assert [list(c) for c in contents.commits] == [list(c) for c in commits]  # key order too
    assert contents.snapshots == snapshots
    assert contents.objects == objects
    assert contents.branch_heads is None


def test_output_is_what_packb_writes_for_the_same_map() -> None:
    commits, snapshots, objects = small_repo()
    raw, _ = write_pack(commits, snapshots, objects)
    expected = {"commits": commits, "snapshots": snapshots, "objects": objects}
    assert raw == msgpack.packb(expected, use_bin_type=True)


def test_digest_is_size_and_sha256_of_the_bytes() -> None:
    raw, digest = write_pack(*small_repo())
    assert digest.size == len(raw)
    assert digest.sha256 == hashlib.sha256(raw).hexdigest()


def test_same_input_twice_gives_identical_bytes() -> None:
    first, digest1 = write_pack(*small_repo())
    second, digest2 = write_pack(*small_repo())
    assert first == second
    assert digest1 == digest2


def test_rewriting_the_vector_is_deterministic_and_lossless() -> None:
    vector = load_vector()
    args = (vector["commits"], vector["snapshots"], vector["objects"])
    first, digest1 = write_pack(*args)
    second, digest2 = write_pack(*args)
    assert first == second and digest1 == digest2
    again = read_mpack(io.BytesIO(first))
    assert again.commits == vector["commits"]
    assert again.snapshots == vector["snapshots"]
    assert again.objects == vector["objects"]


def test_write_packed_writes_stored_records_as_is() -> None:
    commits, snapshots, objects = small_repo()
    out = io.BytesIO()
    writer = MPackWriter(out)
    writer.begin_section("commits", len(commits))
    for commit in commits:
        writer.write_packed(msgpack.packb(commit, use_bin_type=True))
    writer.begin_section("snapshots", len(snapshots))
    for snap in snapshots:
        writer.write_packed(msgpack.packb(snap, use_bin_type=True))
    writer.begin_section("objects", len(objects))
    for obj in objects:
        writer.write_object(obj["object_id"], obj["content"])
    assert writer.finish() == write_pack(commits, snapshots, objects)[1]


@pytest.mark.parametrize("size", [0, 1, 255, 256, 65535, 65536, 70000])
def test_object_bin_headers_match_packb(size: int) -> None:
    obj = make_object(b"x" * size)
    raw, _ = write_pack([], [], [obj])
    assert raw == msgpack.packb({"commits": [], "snapshots": [], "objects": [obj]})


def test_object_content_can_be_written_in_pieces() -> None:
    obj = make_object(bytes(range(256)) * 40)
    out = io.BytesIO()
    writer = MPackWriter(out)
    writer.begin_section("commits", 0)
    writer.begin_section("snapshots", 0)
    writer.begin_section("objects", 1)
    writer.begin_object(obj["object_id"], len(obj["content"]))
    for start in range(0, len(obj["content"]), 1000):
        writer.write_content(obj["content"][start : start + 1000])
    writer.finish()
    assert out.getvalue() == write_pack([], [], [obj])[0]


def _writer_at_objects(count: int) -> MPackWriter:
    writer = MPackWriter(io.BytesIO())
    writer.begin_section("commits", 0)
    writer.begin_section("snapshots", 0)
    writer.begin_section("objects", count)
    return writer


def _misuse_cases() -> list[tuple[str, Any]]:
    def out_of_order() -> None:
        MPackWriter(io.BytesIO()).begin_section("objects", 0)

    def too_few() -> None:
        writer = MPackWriter(io.BytesIO())
        writer.begin_section("commits", 2)
        writer.write_record({"a": 1})
        writer.begin_section("snapshots", 0)

    def too_many() -> None:
        writer = MPackWriter(io.BytesIO())
        writer.begin_section("commits", 0)
        writer.write_record({"a": 1})

    def object_in_commits() -> None:
        writer = MPackWriter(io.BytesIO())
        writer.begin_section("commits", 1)
        writer.write_object("0" * 64, b"")

    def record_in_objects() -> None:
        _writer_at_objects(1).write_record({"a": 1})

    def record_before_section() -> None:
        MPackWriter(io.BytesIO()).write_packed(b"\x80")

    def missing_sections() -> None:
        writer = MPackWriter(io.BytesIO())
        writer.begin_section("commits", 0)
        writer.finish()

    def short_objects() -> None:
        _writer_at_objects(2).finish()

    def content_overrun() -> None:
        writer = _writer_at_objects(1)
        writer.begin_object("0" * 64, 2)
        writer.write_content(b"abc")

    def content_short() -> None:
        writer = _writer_at_objects(1)
        writer.begin_object("0" * 64, 2)
        writer.write_content(b"a")
        writer.finish()

    def negative_count() -> None:
        MPackWriter(io.BytesIO()).begin_section("commits", -1)

    def finished_twice() -> None:
        writer = _writer_at_objects(0)
        writer.finish()
        writer.finish()

    return [
        ("out of order", out_of_order),
        ("declared 2 records, wrote 1", too_few),
        ("declared 0 records, got more", too_many),
        ("current section is 'commits'", object_in_commits),
        ("current section is 'objects'", record_in_objects),
        ("current section is None", record_before_section),
        ("without section(s): snapshots, objects", missing_sections),
        ("declared 2 records, wrote 0", short_objects),
        ("overruns its declared size by 1", content_overrun),
        ("object content is 1 bytes short", content_short),
        ("count must be >= 0", negative_count),
        ("already finished", finished_twice),
    ]


@pytest.mark.parametrize(("message", "misuse"), _misuse_cases())
def test_misuse_is_refused(message: str, misuse: Any) -> None:
    with pytest.raises(MPackWriteError) as info:
        misuse()
    assert message in str(info.value)


def test_a_section_led_before_its_count_gives_the_same_bytes_and_reaches_the_file_at_once(
    tmp_path: Any,
) -> None:
    """The synchronous build writes the pack's first bytes while it plans: a reader of the
    growing file sees them before the counts are known, and the pack is the same."""
    from musehub.mpack.sink import ThreadedPackSink

    commits, snapshots, objects = small_repo()
    expected, expected_digest = write_pack(commits, snapshots, objects)
    path = tmp_path / "pack"
    with path.open("wb") as out:
        writer = MPackWriter(out, sink=ThreadedPackSink(out))
        writer.lead("commits")
        led = b"\x83" + msgpack.packb("commits")
        for _ in range(100):  # the sink's thread writes and flushes it
            if path.read_bytes() == led:
                break
            time.sleep(0.01)
        assert path.read_bytes() == led
        with pytest.raises(MPackWriteError):
            writer.lead("commits")  # led already
        writer.begin_section("commits", len(commits))
        for commit in commits:
            writer.write_record(commit)
        writer.begin_section("snapshots", len(snapshots))
        for snap in snapshots:
            writer.write_record(snap)
        writer.begin_section("objects", len(objects))
        for obj in objects:
            writer.write_object(obj["object_id"], obj["content"])
        digest = writer.finish()
    assert path.read_bytes() == expected and digest == expected_digest
