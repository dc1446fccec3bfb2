"""Processes sharing a metrics folder, as uvicorn's workers do: counts add up, a process that
stops cleanly or is killed leaves the live gauge, what it counted stays."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

CHILD = """
import sys, time
from musehub import metrics
metrics.process_started("api")
metrics.FETCHES.labels(cache="HIT", form="url").inc(3)
if sys.argv[1] == "stop":
    metrics.process_stopped("api")
elif sys.argv[1] == "hang":
    print("counted", flush=True)
    time.sleep(60)
else:
    sys.stdout.write(metrics.exposition().decode())
"""


def run_child(folder: Path, how: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, how], env=env, stdout=subprocess.PIPE, text=True
    )


def value(text: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    assert match, text
    return float(match.group(1))


def test_counts_add_up_and_dead_processes_leave_the_live_gauge(tmp_path: Path) -> None:
    stopped = run_child(tmp_path, "stop")
    assert stopped.wait(30) == 0
    killed = run_child(tmp_path, "hang")
    try:
        assert killed.stdout is not None and killed.stdout.readline() == "counted\n"
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait(30)
    assert not (tmp_path / f"gauge_livesum_{stopped.pid}.db").exists()
    assert (tmp_path / f"gauge_livesum_{killed.pid}.db").exists()  # it had no time to say

    scraper = run_child(tmp_path, "scrape")
    scrape, _ = scraper.communicate(timeout=30)
    assert scraper.returncode == 0
    assert value(scrape, 'musehub_fetch_total{cache="HIT",form="url"}') == 9
    assert value(scrape, 'musehub_processes{role="api"}') == 1  # the scraper alone
    assert not (tmp_path / f"gauge_livesum_{killed.pid}.db").exists()


def test_a_folder_set_after_prometheus_client_was_imported_is_refused(tmp_path: Path) -> None:
    late = (
        "import os, prometheus_client\n"
        f"os.environ['PROMETHEUS_MULTIPROC_DIR'] = {str(tmp_path)!r}\n"
        "from musehub import metrics\n"
        "metrics.exposition()\n"
    )
    result = subprocess.run([sys.executable, "-c", late], capture_output=True, text=True)
    assert result.returncode != 0
    assert "PROMETHEUS_MULTIPROC_DIR was set after prometheus_client was imported" in result.stderr
