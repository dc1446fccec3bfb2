"""Issue 6 (part): peak RSS of the pack build against pack size, each build in its own process
(`bench/build_child.py`); baseline: the original hub's whole-pack-in-RAM build. Issue 15: the
client's peak RSS cloning the same packs (`bench/clone_child.py`), which must be as flat."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.context import Bench
from bench.hub import PushedRepo
from bench.plots import lines
from bench.result import Check, ScenarioResult, Table, mb, secs
from bench.synthetic import big_blobs

TITLE = "5. Memory while building"
GROWTH_LIMIT_MB = 64.0
BUILD_TIMEOUT_S = 1800.0
ROOT = Path(__file__).resolve().parents[2]  # where `bench` imports from


async def run(bench: Bench) -> ScenarioResult:
    sizes = bench.pick([2_000_000, 8_000_000], [20_000_000, 200_000_000, 2_000_000_000])
    blob_size = bench.pick(256 * 1024, 1 << 20)
    rows, hub_peaks, serial_peaks, packs, clone_peaks = [], [], [], [], []
    for size in sizes:
        synth = big_blobs(size, blob_size=blob_size)
        repo = await bench.hub.push(f"memory-{size // 1_000_000}mb", synth)
        await bench.hub.wait_warm(repo, [repo.want], timeout=BUILD_TIMEOUT_S)  # prebuild done
        await bench.hub.quiesce()
        hub_run = await _child(bench, repo, "hub")
        serial_run = await _child(bench, repo, "serial")
        clone_run = await _clone_child(bench, repo)
        clone_peaks.append(clone_run["rss_peak_kib"] / 1024)
        packs.append(hub_run["pack_bytes"])
        hub_peaks.append(hub_run["rss_peak_kib"] / 1024)
        serial_peaks.append(serial_run["rss_peak_kib"] / 1024)
        rows.append(
            [
                mb(hub_run["pack_bytes"]),
                str(len(repo.synth.object_ids)),
                f"{hub_run['rss_before_kib'] / 1024:.0f}",
                f"{hub_peaks[-1]:.0f}",
                f"{hub_peaks[-1] - hub_peaks[0]:+.0f}",
                secs(hub_run["seconds"]),
                f"{serial_peaks[-1]:.0f}",
                secs(serial_run["seconds"]),
                f"{clone_peaks[-1]:.0f}",
                f"{clone_peaks[-1] - clone_peaks[0]:+.0f}",
                secs(clone_run["seconds"]),
            ]
        )
    growth = hub_peaks[-1] - hub_peaks[0]
    clone_growth = clone_peaks[-1] - clone_peaks[0]
    table = Table(
        [
            "pack (MB)",
            "blobs",
            "RSS before build (MiB)",
            "hub build peak RSS (MiB)",
            "growth vs smallest (MiB)",
            "hub build (s)",
            "serial in-RAM build peak RSS (MiB)",
            "serial build (s)",
            "`musehub clone` peak RSS (MiB)",
            "clone growth (MiB)",
            "clone (s)",
        ],
        rows,
        caption=f"Blobs of ~{blob_size // 1024} KiB (log-normal sizes), every one in the head's "
        "tree. Peak RSS is the child's `VmHWM` (it includes the interpreter, SQLAlchemy "
        'and the plan); "before" is read once connected, just before the build.',
    )
    plot = lines(
        bench.plot_path("memory.png"),
        "Peak RSS of one pack build vs pack size",
        "pack size (MB, log)",
        "peak RSS (MiB, log)",
        [p / 1e6 for p in packs],
        {
            "hub build (streamed)": hub_peaks,
            "serial build, whole pack in RAM": serial_peaks,
            "musehub clone (client)": clone_peaks,
        },
        logx=True,
        logy=True,
    )
    span = f"{mb(packs[0])} MB → {mb(packs[-1])} MB packs"
    return ScenarioResult(
        "memory",
        TITLE,
        "Repos of a few commits and many ~1 MiB blobs, pushed through the wire endpoints (large "
        "objects go by presigned PUT). Each build runs `build_and_upload` (the hub's one build) "
        "or the serial baseline in a fresh `python -m bench.build_child` process against the "
        "stack's database and blobs folder, after the prebuild of that repo has finished.",
        tables=[table],
        checks=[
            Check(
                f"peak RSS grows < 64 MB from {span}",
                f"{growth:+.0f} MiB",
                growth < GROWTH_LIMIT_MB,
            ),
            Check(
                f"client peak RSS grows < 64 MB from {span} (`musehub clone`)",
                f"{clone_growth:+.0f} MiB",
                clone_growth < GROWTH_LIMIT_MB,
            ),
        ],
        plots=[plot],
        raw={
            "packs": packs,
            "hub_peaks_mib": hub_peaks,
            "serial_peaks_mib": serial_peaks,
            "clone_peaks_mib": clone_peaks,
        },
    )


async def _clone_child(bench: Bench, repo: PushedRepo) -> dict[str, Any]:
    """A warm `musehub clone` of the repo (downloaded, decoded, checked out) in a fresh process."""
    job = {"url": repo.url, "dest": str(bench.work / f"memory-clone-{repo.slug}")}
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bench.clone_child", json.dumps(job)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise RuntimeError(f"clone child failed: {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


async def _child(bench: Bench, repo: PushedRepo, mode: str) -> dict[str, Any]:
    stack = bench.hub.stack
    job = {
        "mode": mode,
        "state_dir": str(stack.state_dir),
        "database_url": stack.database_url,
        "api_port": stack.api_port,
        "repo_id": repo.repo_id,
        "want": repo.want,
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bench.build_child", json.dumps(job)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{mode} build child failed: {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))
