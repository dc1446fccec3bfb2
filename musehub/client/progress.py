"""A one-line byte progress bar for stderr: done / total, percent, rate."""

from __future__ import annotations

import sys
import time
from typing import TextIO

MIB = 1024 * 1024


def format_bytes(n: float) -> str:
    if n >= MIB:
        return f"{n / MIB:.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{int(n)} B"


class ByteProgress:
    """Redraws at most every ``interval`` seconds so a fast download is not slowed by it."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        stream: TextIO | None = None,
        interval: float = 0.1,
        min_bytes: int = 0,
    ) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self._stream = stream if stream is not None else sys.stderr
        self._interval = interval
        self._min_bytes = min_bytes  # stay silent for answers too small to be worth a bar
        self._drawn = False
        self._started = time.monotonic()
        self._last_draw = 0.0

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.done >= self._min_bytes and now - self._last_draw >= self._interval:
            self._draw(now)

    def finish(self) -> None:
        if not self._drawn and self.done < self._min_bytes:
            return
        self._draw(time.monotonic())
        self._stream.write("\n")
        self._stream.flush()

    def line(self, now: float | None = None) -> str:
        elapsed = max((now if now is not None else time.monotonic()) - self._started, 1e-6)
        rate = f"{format_bytes(self.done / elapsed)}/s"
        if self.total:
            pct = min(100.0, 100.0 * self.done / self.total)
            done, total = format_bytes(self.done), format_bytes(self.total)
            return f"{self.label}: {done} / {total} ({pct:.0f}%), {rate}"
        return f"{self.label}: {format_bytes(self.done)}, {rate}"

    def _draw(self, now: float) -> None:
        self._last_draw = now
        self._drawn = True
        self._stream.write("\r" + self.line(now).ljust(72))
        self._stream.flush()
