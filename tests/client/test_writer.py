"""The clone's file-writing threads (``musehub/client/writer.py``): as many as the cores, 2 to 4,
and every write done (or the first error raised) by ``close``."""

from __future__ import annotations

import functools
import os
import threading

import pytest

from musehub.client.writer import FileWriter, writer_threads


@pytest.mark.parametrize(("cores", "threads"), [(1, 2), (2, 2), (3, 3), (4, 4), (64, 4)])
def test_one_thread_per_core_two_to_four(cores: int, threads: int) -> None:
    assert writer_threads(cores) == threads


def test_the_default_follows_the_cores_this_process_may_use() -> None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert writer_threads() == writer_threads(cores)


def test_every_write_runs_on_at_most_that_many_threads() -> None:
    seen: set[int] = set()
    done: list[int] = []

    def write(n: int) -> None:
        seen.add(threading.get_ident())
        done.append(n)

    files = FileWriter(threads=2)
    for n in range(500):
        files.submit(functools.partial(write, n), weight=10)
    files.close()
    assert sorted(done) == list(range(500)) and 1 <= len(seen) <= 2


def test_the_first_error_is_raised_by_close() -> None:
    files = FileWriter(threads=2)

    def fail() -> None:
        raise OSError("disk full")

    files.submit(fail)
    with pytest.raises(OSError, match="disk full"):
        files.close()
