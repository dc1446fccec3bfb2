"""Decoding a wire request body: hostile bytes only ever give MPackFormatError."""

from __future__ import annotations

from typing import Any

import msgpack

from musehub.mpack.errors import MPackFormatError, explain_unpack_error
from musehub.mpack.limits import DEFAULT_LIMITS, MPackLimits


def decode_request(body: bytes, *, limits: MPackLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Decode a msgpack request body that must be one map with string keys."""
    if len(body) > limits.max_buffer_size:
        raise MPackFormatError(
            f"request body is {len(body)} bytes, over the limit of {limits.max_buffer_size}"
        )
    if not body:
        raise MPackFormatError("request body is empty; send a msgpack map")
    try:
        decoded = msgpack.unpackb(body, **limits.unpacker_options(data_len=len(body)))
    # msgpack reports bad bytes with several exception types; callers must see only one.
    except Exception as exc:
        raise MPackFormatError(
            f"request body is not valid msgpack: {explain_unpack_error(exc)}"
        ) from exc
    if not isinstance(decoded, dict):
        raise MPackFormatError(f"request body must be a msgpack map, got {type(decoded).__name__}")
    if not all(isinstance(key, str) for key in decoded):
        raise MPackFormatError("request body map keys must be strings")
    return decoded
