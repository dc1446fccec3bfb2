"""Caps on what one pack or request body may hold, so hostile bytes cannot exhaust memory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class MPackLimits:
    # Largest single value held in memory at once: one pack record (an object with its content)
    # or one whole request body.
    max_buffer_size: int = 256 * MiB
    max_bin_len: int = 256 * MiB
    max_str_len: int = 16 * MiB
    # Inside records and requests (manifests, `have` lists); pack sections stream, so any length.
    max_array_len: int = 1_000_000
    max_map_len: int = 1_000_000

    def unpacker_options(self, *, data_len: int | None = None) -> dict[str, Any]:
        """Keyword arguments for msgpack.Unpacker / unpackb. With `data_len` (a whole body in
        memory) container lengths are capped by it too: no array holds more items than bytes."""
        cap = self.max_buffer_size if data_len is None else data_len
        return {
            "raw": False,
            "strict_map_key": True,
            "max_bin_len": self.max_bin_len,
            "max_str_len": self.max_str_len,
            "max_ext_len": self.max_str_len,
            "max_array_len": min(self.max_array_len, cap),
            "max_map_len": min(self.max_map_len, cap),
        }


DEFAULT_LIMITS = MPackLimits()
