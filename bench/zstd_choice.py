"""Store raw and zstd, or zstd only? The numbers behind the choice (issue 15 item 1).

    python -m bench.zstd_choice [--preset gabriel-muse] [--out bench/results/zstd_choice.md]

Writes the preset's whole clone pack (its records and blobs, in the hub's section order) with
`MPackWriter` into a temporary folder, then measures in this process, one core:

- the zstd size and compress / decompress time per level, one frame (what the hub stores);
- the size with a frame per section, or per few MiB: what "zstd only" would need so that chain
  parts can still be joined, and compaction run, by byte ranges without decoding;
- the legacy inline answer (muse 0.1.5 clients) served from the raw pack (a ranged file read)
  and from a zstd-only store (decoded on the fly): time to the first byte, throughput, and the
  CPU seconds each such clone costs the API;
- the storage each choice takes.

Load average (`os.getloadavg`) is printed beside the numbers: other work on the machine slows
every row alike, so read the ratios."""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgpack

from musehub.mpack.encoding import ZstdPackWriter
from musehub.mpack.writer import MPackWriter, PackDigest
from musehub.mpack.zstd_module import zstd_module
from musehub.synth import PRESETS, SynthRepo

MiB = 1 << 20
CHUNK = MiB
ZSTD = zstd_module()


def write_clone_pack(repo: SynthRepo, out: Path) -> PackDigest:
    """The head set's whole history as the hub packs it: sections in id order."""
    packer = msgpack.Packer(use_bin_type=True)
    with out.open("wb") as fp:
        writer = MPackWriter(fp)
        writer.begin_section("commits", len(repo.commits))
        for commit in sorted(repo.commits, key=lambda c: c["commit_id"]):
            writer.write_packed(packer.pack(commit))
        writer.begin_section("snapshots", len(repo.snapshots))
        for _, snapshot in sorted(repo.snapshots.items()):
            writer.write_packed(packer.pack(snapshot))
        writer.begin_section("objects", len(repo.object_ids))
        for object_id in sorted(repo.object_ids):
            writer.write_object(object_id, repo.load_object(object_id))
        return writer.finish()


def chunks(path: Path, start: int = 0, end: int | None = None) -> Iterator[bytes]:
    with path.open("rb") as fp:
        fp.seek(start)
        left = (end if end is not None else path.stat().st_size) - start
        while left > 0 and (data := fp.read(min(CHUNK, left))):
            left -= len(data)
            yield data


def cpu_seconds(work: Callable[[], object]) -> float:
    cpu = time.process_time()
    work()
    return time.process_time() - cpu


def compress_file(raw: Path, out: Path, level: int) -> int:
    with out.open("wb") as fp:
        writer = ZstdPackWriter(fp, level=level)
        for data in chunks(raw):
            writer.write(data)
        return writer.finish().size


def framed_size(raw: Path, boundaries: list[int], level: int = 3) -> int:
    """Size of the pack compressed as one frame per span between `boundaries`."""
    total = 0
    for start, end in itertools.pairwise(boundaries):
        compressor = ZSTD.ZstdCompressor(level=level)
        for data in chunks(raw, start, end):
            total += len(compressor.compress(data))
        total += len(compressor.flush())
    return total


def decode_stream(path: Path) -> Iterator[bytes]:
    decompressor = ZSTD.ZstdDecompressor()  # the copy is one frame
    for data in chunks(path):
        while True:
            piece = decompressor.decompress(data, CHUNK)
            data = b""
            if piece:
                yield piece
            if decompressor.eof:
                return
            if decompressor.needs_input:
                break


def serve(stream: Iterator[bytes]) -> tuple[float, float, float, int]:
    """(first byte s, wall s, CPU s, bytes) of handing every chunk on, as the API does."""
    wall, cpu = time.perf_counter(), time.process_time()
    first, size = None, 0
    for data in stream:
        if first is None:
            first = time.perf_counter() - wall
        size += len(data)
    return first or 0.0, time.perf_counter() - wall, time.process_time() - cpu, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="gabriel-muse", choices=sorted(PRESETS))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    with tempfile.TemporaryDirectory(prefix="zstd-choice-") as tmp:
        folder = Path(tmp)
        raw = folder / "pack.mpack"
        digest = write_clone_pack(PRESETS[args.preset].generate(), raw)
        say(f"# zstd: store raw and zstd, or zstd only ({args.preset})")
        say()
        say(f"Raw pack: {digest.size / 1e6:.1f} MB. Load average before: {_load()}.")
        say()
        say("| zstd level, one frame | bytes (MB) | vs raw | compress s (CPU) | decode s (CPU) |")
        say("|---|---|---|---|---|")
        copies: dict[int, Path] = {}
        for level in (1, 3, 6, 9):
            copies[level] = folder / f"pack.{level}.zst"
            size = 0

            def make(level: int = level) -> None:
                nonlocal size
                size = compress_file(raw, copies[level], level)

            cpu = cpu_seconds(make)
            _, _, decode_cpu, _ = serve(decode_stream(copies[level]))
            say(
                f"| {level} | {size / 1e6:.2f} | {size / digest.size:.3f} | {cpu:.3f} | "
                f"{decode_cpu:.3f} |"
            )
        one_frame = copies[3].stat().st_size
        spans = digest.sections
        per_section = [0, spans[0].end, spans[1].end, digest.size]
        say()
        say("| level 3, frames | bytes (MB) | vs one frame |")
        say("|---|---|---|")
        say(f"| one frame | {one_frame / 1e6:.2f} | 1.000 |")
        for label, bounds in (
            ("one per section (3)", per_section),
            ("one per 4 MiB", [*range(0, digest.size, 4 * MiB), digest.size]),
            ("one per 1 MiB", [*range(0, digest.size, MiB), digest.size]),
        ):
            size = framed_size(raw, bounds)
            say(f"| {label} | {size / 1e6:.2f} | {size / one_frame:.3f} |")
        say()
        say("Legacy inline answer (what a muse 0.1.5 clone costs the API), 1 MiB chunks:")
        say()
        say("| served from | first byte (ms) | wall s | CPU s | MB/s |")
        say("|---|---|---|---|---|")
        for label, stream in (
            ("raw pack, read by range (stored both ways)", chunks(raw)),
            ("zstd only, decoded on the fly", decode_stream(copies[3])),
        ):
            first, wall, cpu, size = serve(stream)
            say(
                f"| {label} | {first * 1000:.1f} | {wall:.3f} | {cpu:.3f} | "
                f"{size / wall / 1e6:.0f} |"
            )
        say()
        say("| store | storage bytes (MB) | vs raw only |")
        say("|---|---|---|")
        for label, size in (
            ("raw only (before)", digest.size),
            ("raw and zstd (chosen)", digest.size + one_frame),
            ("zstd only", one_frame),
        ):
            say(f"| {label} | {size / 1e6:.1f} | {size / digest.size:.2f} |")
        say()
        say(f"Load average after: {_load()}.")
    if args.out is not None:
        args.out.write_text("\n".join(lines) + "\n")


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
