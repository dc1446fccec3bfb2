"""One log format for the API and the worker: time, level, logger, message (with repo, tip and
workflow ids in the message's key=value pairs).

The API logs one line per fetch, thousands a second under load, and the standard setup made
that line a fifth of a warm answer's CPU (py-spy at 64 connections): the caller's frame looked
up, a time string formatted, and one write system call per line. So records carry no caller,
thread or process fields (the format uses none), the time string is made once per second, and
lines are written in batches: at most `FLUSH_SECONDS` late, at once for warnings and errors.
`info_line` goes further for the hottest line: the same text, queued without a LogRecord."""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
from collections import deque
from typing import TextIO

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
FLUSH_SECONDS = 0.2
MAX_BUFFERED_LINES = 512


# Set when configure_logging installed the batching handler: only then may info_line skip the
# logging machinery, because then that handler is where every line goes.
_batching: BatchingStreamHandler | None = None


def configure_logging() -> None:
    global _batching
    if logging.getLogger().handlers:
        return  # the host (pytest, uvicorn --log-config) already decided
    # Fields no line shows, each a cost on every record.
    logging._srcfile = None  # type: ignore[attr-defined]  # the documented switch for findCaller
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = BatchingStreamHandler(sys.stderr, SecondCachingFormatter(FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(os.environ.get("MUSEHUB_LOG_LEVEL", "INFO").upper())
    _batching = handler


def info_line(logger: logging.Logger, message: str) -> None:
    """`logger.info(message)`, for a line written on every request: with the batching handler
    in place the line (same format) is queued directly, a third of the cost of a LogRecord."""
    if not logger.isEnabledFor(logging.INFO):
        return
    handler = _batching
    if handler is None or logger.handlers:
        logger.info("%s", message)
        return
    handler.queue(f"{handler.timestamp()} INFO {logger.name} {message}\n")


class SecondCachingFormatter(logging.Formatter):
    """`asctime` to the second (as the default format), computed once per second."""

    def __init__(self, fmt: str) -> None:
        super().__init__(fmt)
        self._second = -1
        self._text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return self.at(record.created)

    def at(self, when: float) -> str:
        second = int(when)
        if second != self._second:
            self._second = second
            self._text = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(second))
        return f"{self._text},{int((when - second) * 1000):03d}"


class BatchingStreamHandler(logging.StreamHandler[TextIO]):
    """A StreamHandler that writes lines in batches from a background thread."""

    def __init__(self, stream: TextIO, formatter: SecondCachingFormatter) -> None:
        super().__init__(stream)
        self.setFormatter(formatter)
        self._clock = formatter
        self._lines: deque[str] = deque()  # append and popleft are thread-safe
        self._wake = threading.Event()
        threading.Thread(target=self._flush_forever, name="log-flush", daemon=True).start()
        atexit.register(self.flush)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
        except Exception:
            self.handleError(record)
            return
        self._lines.append(line)
        if record.levelno >= logging.WARNING or len(self._lines) >= MAX_BUFFERED_LINES:
            self._wake.set()

    def queue(self, line: str) -> None:
        """A line already formatted, to write with the next batch."""
        self._lines.append(line)
        if len(self._lines) >= MAX_BUFFERED_LINES:
            self._wake.set()

    def timestamp(self) -> str:
        """Now, as `asctime` in this handler's lines."""
        return self._clock.at(time.time())

    def flush(self) -> None:
        lines = []
        try:
            while True:
                lines.append(self._lines.popleft())
        except IndexError:
            pass  # taken all (another flush may take the same lines' successors)
        if not lines:
            return
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            try:
                self.stream.write("".join(lines))
                self.stream.flush()
            except (OSError, ValueError):
                pass  # the stream is gone (shutdown): nothing left to tell

    def _flush_forever(self) -> None:
        while True:
            self._wake.wait(FLUSH_SECONDS)
            self._wake.clear()
            self.flush()
