"""Decoding a pack while it downloads, by the encoding the hub named for it (``mpack-zstd``).

``decoding(encoding, write)`` wraps the ``write`` that takes a raw pack's bytes in order and
returns the ``write`` to give the download instead; ``finish()`` after the last byte says
whether the stream ended where it should. One call per pack or chain part, so a chain may mix
raw and zstd parts.

What a hostile or broken stream can do is bounded. Output is produced at most
``OUTPUT_CHUNK_BYTES`` at a time and each piece handed on (the pack pipe's backpressure holds
the rest), so a tiny frame that claims gigabytes never lands in memory at once; a frame that
asks for a window over 16 MiB is refused; and decoding stops with ``DownloadError`` past
``decoded_size``, the raw size the hub promised. Bad bytes,
a failed frame checksum or a stream cut mid-frame are a ``DownloadError`` too, never a partial
pack taken as whole. (The sha256 of the bytes served is checked by the download itself.)"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from musehub.client.errors import DownloadError
from musehub.mpack.zstd_module import zstd_module

if TYPE_CHECKING:
    from backports.zstd import ZstdDecompressor

Write = Callable[[bytes], Awaitable[None]]

ZSTD = "zstd"
OUTPUT_CHUNK_BYTES = 1 << 20
# The largest window a frame may ask the decoder to hold (16 MiB): the hub's level 3 uses 2 MiB
# and level 19 8 MiB; zstd's own default (128 MiB) would let one hostile header take that much.
WINDOW_LOG_MAX = 24


class Decoding:
    """The bytes as served in, the raw pack's bytes out to the wrapped ``write``."""

    def __init__(self, write: Write) -> None:
        self._out = write
        self.decoded = 0

    async def write(self, data: bytes) -> None:
        self.decoded += len(data)
        await self._out(data)

    def finish(self) -> None:
        """Raise ``DownloadError`` unless the stream ended where a pack ends."""


class ZstdDecoding(Decoding):
    """Decoded with the zstd module of Python 3.14 (``compression.zstd``; ``backports.zstd``
    before it): pyzstd's wrapper around the same decoder cost 7 ms more to import, paid by
    every clone before its first pack byte. That decoder reads one frame; a valid zstd stream
    may be several, one after another, so each frame's end starts a new one on what is left."""

    def __init__(self, write: Write, *, decoded_size: int | None) -> None:
        super().__init__(write)
        self._decompressor = _frame_decoder()
        self._at_frame_edge = True  # no frame begun: a stream may end here
        self._limit = decoded_size

    async def write(self, data: bytes) -> None:
        while True:
            if data:
                self._at_frame_edge = False
            piece = self._decompress(data)
            data = b""
            if piece:
                if self._limit is not None and self.decoded + len(piece) > self._limit:
                    raise DownloadError(
                        f"the zstd pack decodes to more than the {self._limit} bytes the hub "
                        "promised; the pack is corrupt or hostile, run the clone again or "
                        "report it to the hub's operator"
                    )
                await super().write(piece)
            if self._decompressor.eof:  # a frame ended: the next one starts on what is left
                data = self._decompressor.unused_data
                self._decompressor = _frame_decoder()
                self._at_frame_edge = True
                if not data:
                    return
            elif self._decompressor.needs_input:
                return

    def finish(self) -> None:
        if not self._at_frame_edge:
            raise DownloadError(
                "the zstd pack ends in the middle of a frame (truncated); run the clone again"
            )
        if self._limit is not None and self.decoded != self._limit:
            raise DownloadError(
                f"the zstd pack decodes to {self.decoded} bytes, the hub promised {self._limit}; "
                "run the clone again or report it to the hub's operator"
            )

    def _decompress(self, data: bytes) -> bytes:
        zstd = zstd_module()
        try:
            return self._decompressor.decompress(data, OUTPUT_CHUNK_BYTES)
        except zstd.ZstdError as exc:
            raise DownloadError(
                f"the zstd pack is corrupt ({exc}); run the clone again or report it to the "
                "hub's operator"
            ) from exc


def _frame_decoder() -> ZstdDecompressor:
    zstd = zstd_module()
    decoder: ZstdDecompressor = zstd.ZstdDecompressor(
        options={zstd.DecompressionParameter.window_log_max: WINDOW_LOG_MAX}
    )
    return decoder


def decoding(encoding: str | None, write: Write, *, decoded_size: int | None = None) -> Decoding:
    """The decoder for a pack served in ``encoding`` (None: raw), handing raw bytes to
    ``write``; ``decoded_size`` is the raw size the hub promised, when it did."""
    if encoding is None:
        return Decoding(write)
    if encoding == ZSTD:
        return ZstdDecoding(write, decoded_size=decoded_size)
    raise DownloadError(
        f"the hub sent the pack as {encoding!r}, which this client cannot decode; upgrade musehub"
    )
