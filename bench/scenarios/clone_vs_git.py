"""Issue 6 (part): a whole clone, end to end, `musehub clone` (warm and cold) against `git clone`
of the same history over `git daemon` on loopback. Both are the real command-line tools."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.baselines import GitDaemon, git_mirror
from bench.context import Bench
from bench.plots import bars
from bench.result import Check, ScenarioResult, Table, mb, ratio, secs
from musehub.client import clone

TITLE = "3. End-to-end clone vs git"
CLONE_TIMEOUT_S = 600.0


async def run(bench: Bench) -> ScenarioResult:
    repo = await bench.gabriel()
    hub = bench.hub
    reps = bench.pick(1, 3)
    folder = bench.work / "clone_vs_git"
    git_pack = await asyncio.to_thread(git_mirror, repo.synth, folder / "gabriel.git")
    with GitDaemon(folder, folder / "git-daemon.log") as daemon:
        git_s = [_timed(["git", "clone", "-q", daemon.url("gabriel.git"), str(folder / f"git-{i}")])
                 for i in range(reps)]
    musehub_cli = [sys.executable, "-m", "musehub.cli.main", "clone", "-q", repo.url]
    await hub.quiesce()
    logged = hub.fetch_outcomes_logged()
    warm_s = [_timed([*musehub_cli, str(folder / f"warm-{i}")]) for i in range(reps)]
    warm_logged = _delta(logged, hub.fetch_outcomes_logged())
    began = time.perf_counter()
    result = await clone(repo.url, folder / "in-process", progress=False)
    in_process_s = time.perf_counter() - began
    import_s = _timed([sys.executable, "-c", "import musehub.cli.main"])
    cold_s = []
    logged = hub.fetch_outcomes_logged()
    for i in range(reps):
        await hub.drop_cache(repo.repo_id)
        cold_s.append(_timed([*musehub_cli, str(folder / f"cold-{i}")]))
    cold_logged = _delta(logged, hub.fetch_outcomes_logged())
    same = _tree_digest(folder / "git-0") == _tree_digest(folder / "warm-0")
    git, warm, cold = (statistics.median(x) for x in (git_s, warm_s, cold_s))
    rows = [
        ["`git clone` over git daemon", secs(git), _runs(git_s), "1.0x"],
        [f"`musehub clone`, warm ({_fmt(warm_logged)})", secs(warm), _runs(warm_s),
         ratio(warm, git)],
        [f"`musehub clone`, cold ({_fmt(cold_logged)})", secs(cold), _runs(cold_s),
         ratio(cold, git)],
        ["`clone()` in-process, warm (no interpreter start)", secs(in_process_s), "",
         ratio(in_process_s, git)],
        ["`python -c 'import musehub.cli.main'` alone", secs(import_s), "", ""],
    ]
    table = Table(
        ["clone", f"median of {reps} (s)", "runs (s)", "vs git"], rows,
        caption=f"`{repo.slug}`: {result.commits} commits, {result.objects} objects; muse pack "
                f"{mb(result.bytes)} MB, git pack {mb(git_pack)} MB (`repack -adb`, deltas and "
                f"bitmaps); both check out {result.files} files. Working trees identical: "
                f"{'yes' if same else 'NO'}.")
    plot = bars(bench.plot_path("clone_vs_git.png"), "Whole clone, end to end (loopback)",
                "wall time (s)", ["git clone", "musehub warm", "musehub cold", "in-process warm"],
                {"median": [git, warm, cold, in_process_s]})
    shutil.rmtree(folder, ignore_errors=True)
    return ScenarioResult(
        "clone_vs_git", TITLE,
        "The same history as a git repository (`bench/baselines.py: git_mirror`: every commit "
        "with the same files, branches and merges, via `git fast-import`, then packed like a git "
        "host keeps it). Each clone is a fresh process writing a fresh folder and checking out "
        "the default branch. Warm: the prebuilt pack is cached. Cold: its cache rows are deleted "
        "first, so the clone's `POST /fetch` builds synchronously (blobs on local disk).",
        tables=[table],
        checks=[Check("warm `musehub clone` no slower than `git clone`",
                      f"{secs(warm)} s vs {secs(git)} s ({ratio(warm, git)})", warm <= git),
                Check("clone of a gabriel/muse-sized repo < 5 s end to end (warm)",
                      f"{secs(warm)} s", warm < 5.0)],
        plots=[plot],
        raw={"git_s": git_s, "warm_s": warm_s, "cold_s": cold_s, "in_process_s": in_process_s,
             "import_s": import_s, "trees_identical": same},
    )


def _timed(command: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(command, check=True, timeout=CLONE_TIMEOUT_S, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def _tree_digest(root: Path) -> str:
    """sha256 over every checked-out file's path and bytes, VCS folders left out."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root)
        if relative.parts[0] in (".git", ".muse"):
            continue
        digest.update(str(relative).encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}


def _fmt(outcomes: dict[str, int]) -> str:
    return ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items())) or "no fetch logged"


def _runs(values: list[float]) -> str:
    return ", ".join(secs(v) for v in values)
