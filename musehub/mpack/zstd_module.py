"""The one zstd library the hub and the client use: Python 3.14's `compression.zstd`, or its
backport (`backports.zstd`) before 3.14. pyzstd wraps the same library and cost a clone 7 ms
more to import; one library, not two, for compressing (`mpack/encoding.py`) and decoding
(`client/encoding.py`)."""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def zstd_module() -> Any:
    """Imported on first use: commands that never touch a zstd pack do not pay for it."""
    try:
        from compression import zstd  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        from backports import zstd
    return zstd
