"""Deterministic file contents: blob ``i`` of seed ``s`` is rebuilt on demand, never stored.

Sizes follow a log-normal spread (many small files, a few large ones, as in a real tree)
scaled so they add up to ``count * mean_size``. Contents are text-like random bytes with a
unique first line, so every blob has its own id.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator

MIN_BLOB_SIZE = 64
# 64 printable symbols: random bytes map onto text that looks like source code to a human.
_ALPHABET = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 \n"
_TO_TEXT = bytes(_ALPHABET[i % len(_ALPHABET)] for i in range(256))


class BlobFactory:
    """``count`` blobs of seed ``seed``; ids are computed once, bytes are regenerated on demand."""

    def __init__(self, count: int, mean_size: int, seed: int = 0, sigma: float = 1.0) -> None:
        self.seed = seed
        self.sizes = _sizes(count, mean_size, seed, sigma)
        self.ids: list[str] = [hashlib.sha256(self.content(i)).hexdigest() for i in range(count)]
        self._index = {oid: i for i, oid in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.sizes)

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes)

    def content(self, index: int) -> bytes:
        header = f"# synth blob {self.seed}:{index}\n".encode()
        body_len = max(0, self.sizes[index] - len(header))
        body = random.Random(f"blob:{self.seed}:{index}").randbytes(body_len)
        return header + body.translate(_TO_TEXT)

    def size_of(self, object_id: str) -> int:
        return self.sizes[self._index[object_id]]

    def load(self, object_id: str) -> bytes:
        """The bytes of ``object_id`` (``KeyError`` if it is not one of ours)."""
        return self.content(self._index[object_id])

    def __contains__(self, object_id: object) -> bool:
        return object_id in self._index

    def iter_blobs(self) -> Iterator[tuple[str, bytes]]:
        for i, oid in enumerate(self.ids):
            yield oid, self.content(i)


def _sizes(count: int, mean_size: int, seed: int, sigma: float) -> list[int]:
    rng = random.Random(f"sizes:{seed}")
    raw = [rng.lognormvariate(0.0, sigma) for _ in range(count)]
    scale = count * mean_size / sum(raw) if raw else 0.0
    return [max(MIN_BLOB_SIZE, round(x * scale)) for x in raw]
