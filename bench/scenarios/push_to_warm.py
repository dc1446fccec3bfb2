"""Issue 4 (part): from the end of a push to every branch tip's prebuilt pack being recorded,
against the time the builds themselves take."""

from __future__ import annotations

import asyncio
import time

from bench.context import Bench
from bench.hub import PushedRepo
from bench.plots import bars
from bench.result import Check, ScenarioResult, Table, mb, secs
from musehub.services.fetch import build_and_upload

TITLE = "4. Push → cache warm"
OVERHEAD_S = 1.0
WARM_TIMEOUT_S = 1200.0
POLL_S = 0.05


async def run(bench: Bench) -> ScenarioResult:
    rows, checks, names, delays, builds = [], [], [], [], []
    for preset, slug in (("gabriel-muse", "gabriel"), ("gabriel-muse-10x", "gabriel-10x")):
        synth = bench.preset(preset).generate()
        await bench.hub.quiesce()
        repo = await bench.hub.push(slug, synth)
        clone_ready, all_ready = await _watch(bench, repo)
        await bench.hub.quiesce()
        build_s, sizes = await _build_each(bench, repo)
        total = sum(build_s)
        delay = None if all_ready is None else all_ready - repo.push_ended
        to_clone = None if clone_ready is None else clone_ready - repo.push_ended
        rows.append([
            f"{preset}{' (smoke stand-in)' if bench.smoke else ''}",
            f"{len(synth.commits):,} / {mb(synth.total_blob_bytes)}",
            f"{secs(repo.push_seconds)} ({repo.pushes})", str(len(repo.targets)),
            f"{mb(max(sizes))}", secs(total), secs(build_s[-1]),
            secs(to_clone) if to_clone is not None else "not within 20 min",
            secs(delay) if delay is not None else "not within 20 min",
            secs(delay - total) if delay is not None else "-"])
        checks.append(Check(f"{preset}: every tip cached within build time + 1 s of the last push",
                            f"{secs(delay)} s vs {secs(total)} s + 1 s" if delay is not None
                            else "never warm", delay is not None and delay < total + OVERHEAD_S))
        names.append(preset)
        delays.append(delay if delay is not None else float("nan"))
        builds.append(total)
    table = Table(
        ["preset", "commits / blob MB", "push (s) (pushes)", "packs", "largest pack (MB)",
         "build time, all packs (s)", "build time, clone pack (s)",
         "push end → clone pack cached (s)", "push end → all packs cached (s)",
         "delay - build time (s)"], rows,
        caption="Build time: the same packs (one per tip, plus the whole head set) built "
                "back to back in-process with `build_and_upload` once the stack is idle: the "
                "work the prebuild cannot avoid. Delay: `musehub_fetch_mpack_cache` polled "
                f"every {POLL_S * 1000:.0f} ms from the moment the last push answered.")
    plot = bars(bench.plot_path("push_to_warm.png"), "Push end → prebuilt packs cached",
                "seconds", names, {"build time (all packs)": builds, "delay to all cached": delays})
    return ScenarioResult(
        "push_to_warm", TITLE,
        "A fresh repo per preset, pushed the way `musehub synth` does (one push per run of "
        "same-branch commits, oldest first), so the prebuild workflow is signalled after every "
        "push and coalesces them. Target: the last tip's packs are recorded within their build "
        "time plus 1 s.", tables=[table], checks=checks, plots=[plot])


async def _watch(bench: Bench, repo: PushedRepo) -> tuple[float | None, float | None]:
    """When the clone's pack (the head set), and when every pack, was first seen recorded."""
    from musehub.services.mpack_cache import cache_id_for

    clone_id = cache_id_for(repo.repo_id, repo.want)
    clone_ready = None
    deadline = time.monotonic() + WARM_TIMEOUT_S
    while time.monotonic() < deadline:
        found = await bench.hub.cached(repo.repo_id, repo.targets)
        now = time.monotonic()
        if clone_ready is None and clone_id in found:
            clone_ready = now
        if len(found) == len(repo.targets):
            return clone_ready, now
        await asyncio.sleep(POLL_S)
    return clone_ready, None


async def _build_each(bench: Bench, repo: PushedRepo) -> tuple[list[float], list[int]]:
    hub = bench.hub
    times, sizes = [], []
    for want in repo.targets:  # the head set comes last
        async with hub.sessions() as session:
            began = time.perf_counter()
            _, digest, _ = await build_and_upload(session, repo.repo_id, want, [],
                                                  storage=hub.storage, settings=hub.settings)
            times.append(time.perf_counter() - began)
            sizes.append(digest.size)
    return times, sizes
