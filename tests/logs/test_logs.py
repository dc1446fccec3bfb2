"""The log lines: one format for every line, the fetch line included, and none lost when the
batching handler's process exits."""

from __future__ import annotations

import logging
import re
import subprocess
import sys

import pytest

from tests.conftest import Hub
from tests.mpack.helpers import VECTOR_HEADS
from tests.wire.helpers import call, decode, push_vector

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING) [\w.]+ .+$")

SCRIPT = """
import logging
from musehub.logs import configure_logging, info_line
configure_logging()
fetch = logging.getLogger("musehub.fetch")
for n in range(1000):
    info_line(fetch, f"[wire_fetch_mpack] cache=HIT repo=r tip=t n={n}")
logging.getLogger("musehub.api").warning("a warning")
logging.getLogger("musehub.api").debug("not shown at INFO")
"""


def test_every_line_has_one_format_and_none_is_lost_at_exit() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    lines = done.stderr.splitlines()
    assert len(lines) == 1001
    assert all(LINE.match(line) for line in lines), lines[:3]
    assert lines[0].endswith("INFO musehub.fetch [wire_fetch_mpack] cache=HIT repo=r tip=t n=0")
    assert lines[-1].endswith("WARNING musehub.api a warning")


async def test_every_fetch_is_logged_with_its_cache_outcome(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    repo = await push_vector(hub)
    body = {"want": [VECTOR_HEADS["main"]], "have": [], "capabilities": ["mpack-url"]}
    with caplog.at_level(logging.INFO, logger="musehub.fetch"):
        decode(await call(hub.client, repo.owner, repo.slug, "fetch", body))
        decode(await call(hub.client, repo.owner, repo.slug, "fetch", body))
    lines = [r.getMessage() for r in caplog.records if r.name == "musehub.fetch"]
    tip = VECTOR_HEADS["main"][:12]
    assert [line.split(" t=")[0] for line in lines] == [
        f"[wire_fetch_mpack] cache=MISS repo={repo.repo_id} tip={tip}",
        f"[wire_fetch_mpack] cache=HIT repo={repo.repo_id} tip={tip}",
    ]
