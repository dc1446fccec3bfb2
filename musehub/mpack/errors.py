"""The one error a malformed pack or request body raises, and plain words for msgpack's errors."""

from __future__ import annotations

import msgpack


class MPackFormatError(ValueError):
    """Bytes that are not a well-formed pack or request; the message is one line for a person."""


def explain_unpack_error(exc: BaseException) -> str:
    """Say in plain words why msgpack refused some bytes."""
    text = str(exc)
    if isinstance(exc, msgpack.OutOfData) or "incomplete input" in text:
        return "the data ends in the middle of a value (truncated or empty)"
    if isinstance(exc, msgpack.ExtraData):
        return "there is trailing data after the top-level map"
    if isinstance(exc, msgpack.BufferFull):
        return "a single value is larger than the buffer limit (max_buffer_size)"
    if isinstance(exc, msgpack.StackError):
        return "values are nested too deeply"
    if isinstance(exc, msgpack.FormatError):
        return "the bytes are not msgpack (a reserved type byte)"
    if isinstance(exc, UnicodeDecodeError):
        return "a string is not valid UTF-8 (send binary data as msgpack bin)"
    if "exceeds max_" in text:
        return f"a value is over a size limit ({text})"
    if "not allowed for map key" in text:
        return f"a map key is not a string ({text})"
    if "code must be" in text or "nanoseconds" in text:
        return "an ext value is invalid or uses a reserved type code"
    if "Unexpected type" in text:
        return "a value has the wrong msgpack type"
    return f"invalid msgpack ({type(exc).__name__}: {text})" if text else "invalid msgpack"
