"""What a clone's (and a pull's) first request says, in one place: ``POST /fetch`` for every
branch head, the refs in the answer (``mpack-refs``), a pull's tips as ``have``.
``wire.MuseRemote.head_set_answer`` sends it; ``early`` sends the same bytes before the client
has loaded. Imports nothing heavy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

ACCEPT = "application/x-msgpack, application/json"
MSGPACK = "application/x-msgpack"
REQUEST_TIMEOUT_S = 60.0
ORIGIN = "origin"  # the remote a clone records, and a pull fetches from
# A chain (a base and top-ups) when the hub has one, one pack URL from a hub without chains.
RAW_CAPABILITIES = ("mpack-chain", "mpack-url")
ZSTD_CAPABILITY = "mpack-zstd"
CAPABILITIES = (*RAW_CAPABILITIES, ZSTD_CAPABILITY)
# Lets a clone or pull skip `GET /refs`: `want: []` asks for every branch head
# (`head_set_answer`).
REFS_CAPABILITY = "mpack-refs"


def clone_capabilities(zstd: bool) -> tuple[str, ...]:
    """What a clone asks for: zstd copies unless ``--no-zstd``."""
    return CAPABILITIES if zstd else RAW_CAPABILITIES


def head_set_body(capabilities: Sequence[str], have: Sequence[str] = ()) -> dict[str, Any]:
    """Every branch head with the refs; a pull names what it has (``have``), a clone nothing."""
    return {"want": [], "have": list(have), "capabilities": [*capabilities, REFS_CAPABILITY]}
