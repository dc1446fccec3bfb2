"""Stored packs in a compressed encoding: zstd copies of raw packs, made by streaming.

A raw pack (what every wire form and the chain machinery work on) may have a zstd copy stored
beside it under `encoded_key(raw key)`. The copy is one zstd frame with a content checksum, so
the client's decoder checks it too; clients that sent `mpack-zstd` are given its URL, size and
sha256. Memory stays bounded by one input chunk and the compressor's window, whatever the size.
"""

from __future__ import annotations

from typing import BinaryIO, Final

from musehub.mpack.sink import PackSink
from musehub.mpack.writer import PackDigest
from musehub.mpack.zstd_module import zstd_module

ZSTD: Final = "zstd"
# Level 3 (zstd's default) took the gabriel pack from 41.7 MB to 22.5 MB in 0.10 s; higher
# levels cost several times the CPU for a few percent (bench/results/zstd.md).
ZSTD_LEVEL: Final = 3
_SUFFIX: Final = ".zst"


def encoded_key(raw_key: str) -> str:
    """Where the zstd copy of the raw pack stored under `raw_key` lives (beside it, so GC finds
    and deletes the two together)."""
    return raw_key + _SUFFIX


def raw_key_of(key: str) -> str:
    """The raw pack a stored key belongs to: itself, or the raw pack of a zstd copy."""
    return key.removesuffix(_SUFFIX)


class ZstdPackWriter:
    """Compress a raw pack's bytes, given in order, into `out`; `finish` returns the size and
    sha256 of the compressed bytes (what a client is promised)."""

    def __init__(self, out: BinaryIO, *, level: int = ZSTD_LEVEL) -> None:
        self._sink = PackSink(out)
        zstd = zstd_module()
        parameter = zstd.CompressionParameter
        options = {parameter.compression_level: level, parameter.checksum_flag: 1}
        self._compressor = zstd.ZstdCompressor(options=options)
        self._end_frame = zstd.ZstdCompressor.FLUSH_FRAME

    def write(self, data: bytes) -> None:
        compressed = self._compressor.compress(data)
        if compressed:
            self._sink.write(compressed)

    def finish(self) -> PackDigest:
        self._sink.write(self._compressor.flush(self._end_frame))
        return PackDigest(self._sink.size, self._sink.close())
