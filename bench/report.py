"""BENCHMARKS.md: machine facts, every target met or MISSED, then one section per scenario."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from bench.result import ScenarioResult, Table


def machine_facts() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "CPU": cpu,
        "cores": str(os.cpu_count()),
        "RAM": f"{ram / 2**30:.1f} GiB",
        "OS": f"{platform.system()} {platform.release()}",
        "Python": sys.version.split()[0],
        "git": _version(["git", "--version"]),
        "wrk": _version(["wrk", "-v"]),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _version(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else "?"


def load_results(out: Path) -> list[ScenarioResult]:
    """The scenarios of the last report in `out` (for `--merge`), or none."""
    path = out / "results.json"
    if not path.exists():
        return []
    return [ScenarioResult.from_dict(r) for r in json.loads(path.read_text())["results"]]


def write_report(
    out: Path, results: Sequence[ScenarioResult], *, command: str, smoke: bool, wall_seconds: float
) -> Path:
    facts = machine_facts()
    results = sorted(results, key=lambda r: r.title)  # titles start with the number
    lines = ["# MuseHub benchmarks", ""]
    if smoke:
        lines += [
            "> **Smoke run**: tiny sizes, only shows that every scenario runs. "
            "The numbers say nothing about the targets.",
            "",
        ]
    lines += [
        f"Command: `{command}` (wall time {wall_seconds / 60:.1f} min; each section says "
        "which run measured it). "
        "Every scenario runs its baseline in the same run, on the same machine, against "
        "the same `musehub dev` stack (API, worker, PostgreSQL and Temporal as child "
        "processes on loopback), so the ratios are what to read.",
        "",
    ]
    lines += _table(Table(["machine", ""], [[k, v] for k, v in facts.items()]))
    lines += ['## Targets (design.md, "Numbers to hold")', ""]
    rows = [[r.title, c.target, c.measured, c.verdict] for r in results for c in r.checks]
    rows += [
        [r.title, "(scenario failed)", r.error or "", "NOT MEASURED"] for r in results if r.error
    ]
    lines += _table(Table(["scenario", "target", "measured", "verdict"], rows))
    for result in results:
        lines += _section(result)
    path = out / "BENCHMARKS.md"
    path.write_text("\n".join(lines) + "\n")
    raw = {"facts": facts, "smoke": smoke, "results": [asdict(r) for r in results]}
    (out / "results.json").write_text(json.dumps(raw, indent=1, default=str))
    return path


def _section(result: ScenarioResult) -> list[str]:
    lines = [f"## {result.title}", "", result.about, ""]
    if result.error:
        lines += ["**The scenario failed:**", "", "```", result.error, "```", ""]
    for table in result.tables:
        lines += _table(table)
    for check in result.checks:
        lines.append(f"- **{check.verdict}**: {check.target}: {check.measured}")
    if result.checks:
        lines.append("")
    for plot in result.plots:
        lines += [f"![{plot}]({plot})", ""]
    for note in result.notes:
        lines += [f"- {note}"]
    lines += ["", f"_Scenario wall time: {result.seconds:.0f} s; measured {result.ran_at}._", ""]
    return lines


def _table(table: Table) -> list[str]:
    lines = []
    if table.caption:
        lines += [table.caption, ""]
    lines.append("| " + " | ".join(table.headers) + " |")
    lines.append("|" + "---|" * len(table.headers))
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in table.rows]
    return [*lines, ""]
