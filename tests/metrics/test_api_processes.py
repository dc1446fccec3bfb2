"""`musehub api --workers 2` as a deployment runs it: clones answered by both processes add up
in every scrape, whichever process answers it (each used to show its own count: 1, 5, 5, 1)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgpack
import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from musehub.devstack.ports import free_port
from musehub.metric_batches import FLUSH_SECONDS
from musehub.metrics_dir import PREFIX
from tests.conftest import Hub
from tests.mpack.helpers import VECTOR_HEADS
from tests.processes import dead_pid, stop_group
from tests.wire.helpers import push_vector

pytestmark = pytest.mark.local_storage_only("metrics summed over processes")

MUSEHUB = [sys.executable, "-m", "musehub.cli.main"]
BATCH = 32
MAX_BATCHES = 20
SCRAPES = 12


def total(text: str, name: str) -> float:
    """The sum of every series of `name` in an exposition."""
    return sum(float(v) for v in re.findall(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.M))


def fetches_by_process(folder: Path) -> dict[int, float]:
    """What each process wrote to its own counter file: who answered the clones."""
    counts: dict[int, float] = {}
    for path in folder.glob("counter_*.db"):
        pid = int(path.stem.removeprefix("counter_"))
        counts[pid] = sum(
            value
            for key, value, _ts, _pos in MmapedDict.read_all_values_from_file(str(path))
            if json.loads(key)[1] == "musehub_fetch_total"
        )
    return counts


def write_fetch_count(path: Path, count: float) -> None:
    """A counter file as a process of another run would have left it."""
    labels = ["cache", "form"], ["HIT", "url"]
    key = mmap_key("musehub_fetch", "musehub_fetch_total", *labels, "answers")
    counts = MmapedDict(str(path))
    counts.write_value(key, count, 0.0)
    counts.close()


@pytest.fixture
def api(hub: Hub, postgres_server_url: str, tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """`musehub api --workers 2` over the test database and `hub`'s storage; yields its URL,
    its temp folder (TMPDIR) and its log. An inherited PROMETHEUS_MULTIPROC_DIR naming a folder
    with another run's counts, and the folder a killed `musehub api` left, are both there."""
    tmp = tmp_path / "tmp"
    stale = tmp_path / "stale-metrics"
    abandoned = tmp / f"{PREFIX}{dead_pid()}-x1y2"
    for folder in (tmp, stale, abandoned):
        folder.mkdir()
    write_fetch_count(stale / "counter_1.db", 100)
    write_fetch_count(abandoned / "counter_1.db", 100)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSEHUB_")}
    env.update(
        TMPDIR=str(tmp),
        PROMETHEUS_MULTIPROC_DIR=str(stale),
        MUSEHUB_STATE_DIR=str(tmp_path / "state"),
        MUSEHUB_DATABASE_URL=postgres_server_url,
        MUSEHUB_DATABASE_POOL_SIZE="2",
        MUSEHUB_STORAGE_LOCAL_ROOT=str(hub.settings.blobs_root),
        MUSEHUB_SIGNING_KEY="test-signing-key",
    )
    log = tmp_path / "api.log"
    process = subprocess.Popen(
        [*MUSEHUB, "api", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its worker processes can be stopped with it, whatever happens
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_both_serve(base, process, log)
        assert not abandoned.exists(), "a killed command's folder was left behind"
        yield base, tmp, log
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, log.read_text()
    finally:
        stop_group(process)
    assert list(tmp.glob(f"{PREFIX}*")) == [], "the metrics folder outlived the command"
    assert (stale / "counter_1.db").exists()  # an inherited folder is not ours to clear


def _wait_until_both_serve(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"musehub api exited with {process.returncode}:\n{log.read_text()}"
            )
        try:
            text = httpx.get(f"{base}/metrics", timeout=2).text
            if total(text, "musehub_processes") == 2:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"two API processes did not start within 60 s:\n{log.read_text()}")


async def test_every_scrape_reads_the_clones_of_every_process(
    hub: Hub, api: tuple[str, Path, Path]
) -> None:
    base, tmp, _log = api
    owner, slug, _token, _repo_id = await push_vector(hub)
    body = msgpack.packb(
        {"want": [VECTOR_HEADS["main"]], "have": [], "capabilities": ["mpack-url"]}
    )
    headers = {"Content-Type": "application/x-msgpack", "Connection": "close"}

    async def clone() -> str:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            answer = await client.post(f"/{owner}/{slug}/fetch", content=body, headers=headers)
        assert answer.status_code == 200, answer.text
        return answer.headers["x-musehub-cache"]

    outcomes = [await clone()]  # the MISS that builds; then hits over new connections at once
    (folder,) = tmp.glob(f"{PREFIX}*")
    # An idle process that wins the race for a new connection tends to win every race: batches
    # at once until the other one has answered too, as it does under load.
    for _ in range(MAX_BATCHES):
        outcomes += await asyncio.gather(*(clone() for _ in range(BATCH)))
        await asyncio.sleep(2 * FLUSH_SECONDS)  # each process adds its counts to its files
        if all(fetches_by_process(folder).values()):
            break
    assert outcomes[0] == "MISS" and set(outcomes[1:]) == {"HIT"}
    clones = len(outcomes)
    by_process = fetches_by_process(folder)
    assert sum(by_process.values()) == clones
    assert len([n for n in by_process.values() if n > 0]) == 2, by_process  # both answered

    for _ in range(SCRAPES):  # a new connection each: either process may answer
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            scrape = (await client.get("/metrics", headers={"Connection": "close"})).text
        assert total(scrape, "musehub_fetch_total") == clones
        assert total(scrape, "musehub_fetch_seconds_count") == clones
        assert total(scrape, "musehub_processes") == 2
