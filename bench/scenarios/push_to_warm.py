"""Issue 4 (part): from the end of a push to every branch tip's prebuilt pack being recorded,
against the time the builds themselves take."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from bench import load
from bench.context import Bench
from bench.hub import PushedRepo, fetch_body
from bench.plots import bars
from bench.result import Check, ScenarioResult, Table, mb, ms, secs
from bench.scenarios.warm_fetch import MIN_ANSWERS_PER_S, P99_64_MS, P99_ONE_CLIENT_MS
from musehub.services import mpack_cache
from musehub.services.mpack_build import build_and_upload

TITLE = "4. Push → cache warm"
OVERHEAD_S = 1.0
WARM_TIMEOUT_S = 1200.0
POLL_S = 0.05


async def run(bench: Bench) -> ScenarioResult:
    rows, answer_rows, checks, names, delays, builds = [], [], [], [], [], []
    for preset, slug in (("gabriel-muse", "gabriel"), ("gabriel-muse-10x", "gabriel-10x")):
        synth = bench.preset(preset).generate()
        await bench.hub.quiesce()
        repo = await bench.hub.push(slug, synth)
        clone_ready, all_ready = await _watch(bench, repo)
        await bench.hub.quiesce()
        answers = await _warm_answers(bench, repo)
        await bench.hub.quiesce()
        build_s, sizes = await _build_each(bench, repo)
        answer_rows.append([*answers.row(preset), secs(build_s[0])])
        checks += answers.checks(preset)
        total = sum(build_s)
        delay = None if all_ready is None else all_ready - repo.push_ended
        to_clone = None if clone_ready is None else clone_ready - repo.push_ended
        rows.append(
            [
                f"{preset}{' (smoke stand-in)' if bench.smoke else ''}",
                f"{len(synth.commits):,} / {mb(synth.total_blob_bytes)}",
                f"{secs(repo.push_seconds)} ({repo.pushes})",
                str(len(repo.targets)),
                f"{mb(max(sizes))}",
                secs(total),
                secs(build_s[0]),
                secs(to_clone) if to_clone is not None else "not within 20 min",
                secs(delay) if delay is not None else "not within 20 min",
                secs(delay - total) if delay is not None else "-",
            ]
        )
        checks.append(
            Check(
                f"{preset}: every tip cached within build time + 1 s of the last push",
                f"{secs(delay)} s vs {secs(total)} s + 1 s" if delay is not None else "never warm",
                delay is not None and delay < total + OVERHEAD_S,
            )
        )
        names.append(preset)
        delays.append(delay if delay is not None else float("nan"))
        builds.append(total)
    table = Table(
        [
            "preset",
            "commits / blob MB",
            "push (s) (pushes)",
            "packs",
            "largest pack (MB)",
            "build time, all packs (s)",
            "build time, clone pack (s)",
            "push end → clone pack cached (s)",
            "push end → all packs cached (s)",
            "delay - build time (s)",
        ],
        rows,
        caption="Build time: the same packs (one per tip, plus the whole head set) built "
        "back to back in-process with `build_and_upload` once the stack is idle, each "
        "uploaded again (its stored copy removed first): the work the prebuild cannot "
        "avoid. Delay: `musehub_fetch_mpack_cache` polled "
        f"every {POLL_S * 1000:.0f} ms from the moment the last push answered.",
    )
    answer_table = Table(
        [
            "preset",
            "requests",
            "1 client p50 (ms)",
            "1 client p99 (ms)",
            "64 conns answers/s",
            "64 conns p50 (ms)",
            "64 conns p99 (ms)",
            "errors / not HIT",
            "cold miss: clone pack built + uploaded (s)",
        ],
        answer_rows,
        caption="The same repos once warm: the clone's `POST /fetch` (URL form, want = every "
        "head, have = []) from one sequential client (httpx, keep-alive) and from "
        "`wrk -t2 -c64`; the cold miss is the head set's pack built and uploaded by "
        "`build_and_upload`, the synchronous miss path, as in the build-time column.",
    )
    plot = bars(
        bench.plot_path("push_to_warm.png"),
        "Push end → prebuilt packs cached",
        "seconds",
        names,
        {"build time (all packs)": builds, "delay to all cached": delays},
    )
    return ScenarioResult(
        "push_to_warm",
        TITLE,
        "A fresh repo per preset, pushed the way `musehub synth` does (one push per run of "
        "same-branch commits, oldest first), so the prebuild workflow is signalled after every "
        "push and coalesces them. Target: the last tip's packs are recorded within their build "
        "time plus 1 s. Then the warm answer and the cold miss of the same repos, so issue 4's "
        "numbers for both presets come from one run.",
        tables=[table, answer_table],
        checks=checks,
        plots=[plot],
    )


@dataclass
class WarmAnswers:
    url: load.Sequential
    wrk: load.WrkResult

    def row(self, preset: str) -> list[str]:
        w = self.wrk
        return [
            preset,
            str(len(self.url.latencies)),
            ms(self.url.p(50)),
            ms(self.url.p(99)),
            f"{w.requests_per_s:,.0f}",
            f"{w.latency_ms.get('50%', 0):.1f}",
            f"{w.latency_ms.get('99%', 0):.1f}",
            f"{w.non_2xx + w.socket_errors} / {w.not_hit}",
        ]

    def checks(self, preset: str) -> list[Check]:
        p99 = self.url.p(99) * 1000
        rate, p99_64 = self.wrk.requests_per_s, self.wrk.latency_ms.get("99%", float("inf"))
        return [
            Check(
                f"{preset}: URL form, 1 client p99 < 10 ms",
                f"{p99:.1f} ms",
                p99 < P99_ONE_CLIENT_MS and self.url.all_hits,
            ),
            Check(
                f"{preset}: ≥ 2,000 answers/s at 64 connections with p99 < 50 ms",
                f"{rate:,.0f}/s, p99 {p99_64:.1f} ms",
                rate >= MIN_ANSWERS_PER_S and p99_64 < P99_64_MS and self.wrk.not_hit == 0,
            ),
        ]


async def _warm_answers(bench: Bench, repo: PushedRepo) -> WarmAnswers:
    fetch_url, body = f"{repo.url}/fetch", fetch_body(repo.want)
    url = await asyncio.to_thread(load.sequential, fetch_url, body, bench.pick(50, 500))
    wrk = await asyncio.to_thread(load.wrk, fetch_url, body, bench.work, seconds=bench.pick(1, 10))
    return WarmAnswers(url, wrk)


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
    """Each target built and uploaded like a cache miss would. The prebuild has just uploaded
    these very packs, and an upload finding its pack already stored skips it; so each pack's
    object is removed first, and the build puts the same bytes back under the same key."""
    hub = bench.hub
    times, sizes = [], []
    for want in repo.targets:  # the head set (the clone's pack) comes first
        async with hub.sessions() as session:
            entry = await mpack_cache.lookup(session, repo.repo_id, want)
            if entry is not None and entry.mpack_id is not None:
                await hub.storage.delete(entry.mpack_id)
            began = time.perf_counter()
            built = await build_and_upload(
                session,
                repo.repo_id,
                want,
                [],
                storage=hub.storage,
                work_dir=hub.settings.work_dir,
                read_concurrency=hub.settings.storage.read_concurrency,
            )
            digest = built.digest
            times.append(time.perf_counter() - began)
            sizes.append(digest.size)
    return times, sizes
