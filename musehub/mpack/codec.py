"""The muse pack codec: everything other modules need to write, read and serve packs.

A pack ("mpack") is one msgpack map `{commits: [CommitDict], snapshots: [SnapshotDict],
objects: [{object_id, content(bin)}]}`, exactly what `POST /fetch` returns inline minus
`branch_heads`. Writing is in `writer`, reading in `reader`, inline serving in `inline`,
request bodies in `request`.
"""

from __future__ import annotations

from musehub.mpack.errors import MPackFormatError
from musehub.mpack.inline import (
    INLINE_HEADER,
    STORED_HEADER,
    ainline_answer,
    branch_heads_trailer,
    inline_answer,
)
from musehub.mpack.limits import DEFAULT_LIMITS, MPackLimits
from musehub.mpack.reader import MPackContents, MPackItem, MPackKind, iter_mpack, read_mpack
from musehub.mpack.request import decode_request
from musehub.mpack.writer import SECTIONS, MPackWriteError, MPackWriter, PackDigest

__all__ = [
    "DEFAULT_LIMITS",
    "INLINE_HEADER",
    "SECTIONS",
    "STORED_HEADER",
    "MPackContents",
    "MPackFormatError",
    "MPackItem",
    "MPackKind",
    "MPackLimits",
    "MPackWriteError",
    "MPackWriter",
    "PackDigest",
    "ainline_answer",
    "branch_heads_trailer",
    "decode_request",
    "inline_answer",
    "iter_mpack",
    "read_mpack",
]
