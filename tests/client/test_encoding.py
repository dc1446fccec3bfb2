"""The clone's decoder for packs served in zstd (`musehub/client/encoding.py`): raw bytes out in
order, and every broken or hostile stream a DownloadError, with memory bounded."""

from __future__ import annotations

import os

import pytest

from musehub.client.encoding import OUTPUT_CHUNK_BYTES, decoding
from musehub.client.errors import DownloadError
from musehub.mpack.zstd_module import zstd_module
from tests.mpack.helpers import VECTOR_PATH

RAW = VECTOR_PATH.read_bytes() + os.urandom(300_000) + bytes(3_000_000)
zstd = zstd_module()
compress = zstd.compress
ZSTD = compress(RAW, options={zstd.CompressionParameter.checksum_flag: 1})


class Collected:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    async def write(self, data: bytes) -> None:
        self.chunks.append(data)

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


async def feed(data: bytes, *, step: int, decoded_size: int | None) -> Collected:
    out = Collected()
    decoder = decoding("zstd", out.write, decoded_size=decoded_size)
    for start in range(0, len(data), step):
        await decoder.write(data[start : start + step])
    decoder.finish()
    return out


@pytest.mark.parametrize("step", [1000, 1 << 20])
async def test_zstd_decodes_to_the_raw_bytes_in_bounded_pieces(step: int) -> None:
    out = await feed(ZSTD, step=step, decoded_size=len(RAW))
    assert out.data == RAW
    assert max(len(c) for c in out.chunks) <= OUTPUT_CHUNK_BYTES


async def test_the_test_vector_fed_byte_by_byte_decodes_unchanged() -> None:
    vector = VECTOR_PATH.read_bytes()
    out = await feed(compress(vector), step=1, decoded_size=len(vector))
    assert out.data == vector


async def test_frames_one_after_another_are_one_stream() -> None:
    out = await feed(compress(RAW[:1000]) + compress(RAW[1000:]), step=4096, decoded_size=None)
    assert out.data == RAW


@pytest.mark.parametrize("cut", ["at the frame's end", "inside the second frame's header"])
async def test_frames_split_across_writes_at_any_point(cut: str) -> None:
    """Each frame is decoded by a decoder of its own: one frame ending exactly where a write
    ends, or a write that ends a frame and begins the next, goes on into the next frame; an
    empty (or skippable) frame between them decodes to nothing."""
    first, second = compress(RAW[:5000]), compress(RAW[5000:])
    skippable = (0x184D2A50).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"abc"
    stream = first + skippable + compress(b"") + second
    at = len(first) if cut == "at the frame's end" else len(first) + len(skippable) + 20
    out = Collected()
    decoder = decoding("zstd", out.write, decoded_size=len(RAW))
    await decoder.write(stream[:at])
    await decoder.write(stream[at:])
    decoder.finish()
    assert out.data == RAW


async def test_raw_packs_pass_through_unchanged() -> None:
    out = Collected()
    decoder = decoding(None, out.write)
    await decoder.write(b"abc")
    decoder.finish()
    assert out.data == b"abc" and decoder.decoded == 3


async def test_a_truncated_frame_is_an_error() -> None:
    with pytest.raises(DownloadError, match="truncated"):
        await feed(ZSTD[:-3], step=4096, decoded_size=None)


async def test_corrupt_bytes_are_an_error() -> None:
    broken = bytearray(ZSTD)
    broken[len(broken) // 2] ^= 0x55
    with pytest.raises(DownloadError, match="corrupt"):
        await feed(bytes(broken), step=4096, decoded_size=len(RAW))


async def test_fewer_bytes_than_promised_are_an_error() -> None:
    with pytest.raises(DownloadError, match="promised"):
        await feed(ZSTD, step=4096, decoded_size=len(RAW) + 1)


async def test_a_decompression_bomb_stops_at_the_promised_size() -> None:
    """A 6 KB frame that claims 200 MB: decoding stops past the promise, holding at most one
    output piece, and never asks the decompressor for it all at once."""
    bomb = compress(bytes(200_000_000))
    assert len(bomb) < 10_000
    out = Collected()
    decoder = decoding("zstd", out.write, decoded_size=5 * OUTPUT_CHUNK_BYTES)
    with pytest.raises(DownloadError, match="more than the"):
        await decoder.write(bomb)
    assert len(out.data) == 5 * OUTPUT_CHUNK_BYTES


async def test_a_frame_asking_for_a_huge_window_is_refused() -> None:
    """A header may ask the decoder to hold a window of up to 2 GiB: over 16 MiB is refused."""
    compressor = zstd.ZstdCompressor(options={zstd.CompressionParameter.window_log: 26})
    frame = compressor.compress(RAW[:100_000]) + compressor.flush()
    with pytest.raises(DownloadError, match="corrupt"):
        await feed(frame, step=4096, decoded_size=None)


async def test_an_encoding_the_client_does_not_know_is_an_error() -> None:
    with pytest.raises(DownloadError, match="cannot decode"):
        decoding("br", Collected().write)
