"""Issue 4: the warm clone answer (`POST /fetch`, have = [], want = every head) against history
length, once the prebuild has filled the cache; baseline: the same content answered without
the cache."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from bench import bare_asgi, load
from bench.context import Bench
from bench.hub import HEADERS, PushedRepo, fetch_body
from bench.plots import lines
from bench.result import Check, ScenarioResult, Table, mb, ms, secs
from bench.synthetic import long_history

TITLE = "2. Warm clone answer vs repo size"
P99_ONE_CLIENT_MS = 10.0
MIN_ANSWERS_PER_S = 2000.0
P99_64_MS = 50.0
MIN_SHARE_OF_BARE = 0.5
FLAT = 1.5
WARM_TIMEOUT_S = 300.0
REQUEST_TIMEOUT_S = 600.0


@dataclass
class SizeRun:
    commits: int
    repo: PushedRepo
    warm_s: float | None  # push end -> every prebuilt pack recorded
    pack_bytes: int
    url: load.Sequential
    inline: load.Sequential
    wrk: load.WrkResult
    ceiling: load.WrkResult  # the bare ASGI endpoint, measured right after `wrk`
    uncached: list[float]
    uncached_error: str | None
    quiesce_s: float


async def run(bench: Bench) -> ScenarioResult:
    sizes = bench.pick([100, 500], [100, 1_000, 10_000, 100_000])
    runs: list[SizeRun] = []
    notes: list[str] = []
    with bare_asgi.serving(bench.hub.settings.api.workers) as bare_url:
        for commits in sizes:
            try:
                runs.append(await _measure_size(bench, commits, notes, bare_url))
            except Exception as exc:  # one size failing must not lose the others' numbers
                notes.append(f"**{commits:,} commits: not measured**: {type(exc).__name__}: {exc}")
    if not runs:
        raise RuntimeError("no size could be measured: " + " / ".join(notes))
    await bench.hub.quiesce()
    health = await asyncio.to_thread(
        load.wrk, f"{bench.hub.stack.base_url}/health", None, bench.work, seconds=bench.pick(1, 10)
    )
    result = _result(bench, runs, notes)
    result.tables.append(
        Table(
            ["request", "64 conns answers/s", "p50 (ms)", "p99 (ms)"],
            [
                [
                    "`GET /health` (one `SELECT 1`)",
                    f"{health.requests_per_s:,.0f}",
                    f"{health.latency_ms.get('50%', 0):.1f}",
                    f"{health.latency_ms.get('99%', 0):.1f}",
                ]
            ],
            caption="**Reference**: the cheapest request that goes through FastAPI's routing and "
            "dependencies, a pooled SQLAlchemy session and PostgreSQL, under the same "
            "`wrk -t2 -c64` (the warm `/fetch` takes none of these).",
        )
    )
    return result


async def _measure_size(bench: Bench, commits: int, notes: list[str], bare_url: str) -> SizeRun:
    hub = bench.hub
    repo = await hub.push(f"history-{commits}", long_history(commits))
    seen = await hub.wait_warm(repo, timeout=WARM_TIMEOUT_S)
    warm_s = None if seen is None else seen - repo.push_ended
    fetch_url = f"{repo.url}/fetch"
    body = fetch_body(repo.want)
    if seen is None:
        notes.append(
            f"**{commits:,} commits: the prebuild had not recorded every pack "
            f"{WARM_TIMEOUT_S:.0f} s after the push** (see the worker log); the cache "
            "was warmed by one clone request (a MISS builds and records) instead."
        )
        await asyncio.to_thread(load.sequential, fetch_url, body, 1, timeout=REQUEST_TIMEOUT_S)
    quiesce_s = await hub.quiesce()
    first = await asyncio.to_thread(load.sequential, fetch_url, body, 1)
    url = await asyncio.to_thread(load.sequential, fetch_url, body, bench.pick(50, 500))
    inline_body = fetch_body(repo.want, url_form=False)
    inline = await asyncio.to_thread(
        load.sequential, fetch_url, inline_body, bench.pick(3, 20), max_seconds=120.0
    )
    wrk = await asyncio.to_thread(load.wrk, fetch_url, body, bench.work, seconds=bench.pick(1, 10))
    ceiling = await asyncio.to_thread(
        load.wrk, f"{bare_url}/bench/bare/fetch", body, bench.work, seconds=bench.pick(1, 10)
    )
    uncached, error = await _uncached(repo, bench.pick(1, 3 if commits < 100_000 else 1))
    pack_bytes = inline.bytes // max(1, len(inline.latencies))
    if not first.all_hits:
        notes.append(f"{commits} commits: the first warm request answered {first.statuses}.")
    return SizeRun(
        commits, repo, warm_s, pack_bytes, url, inline, wrk, ceiling, uncached, error, quiesce_s
    )


async def _uncached(repo: PushedRepo, reps: int) -> tuple[list[float], str | None]:
    """The same clone answered by the synchronous build: `have = [root commit]` is never cached,
    so every request plans, reads every blob but the root's, assembles and uploads."""
    body = fetch_body(repo.want, [repo.root_commit])
    times: list[float] = []
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S, headers=HEADERS) as client:
        for _ in range(reps):
            began = time.perf_counter()
            try:
                response = await client.post(f"{repo.url}/fetch", content=body)
            except httpx.TimeoutException:
                return times, f"no answer within {REQUEST_TIMEOUT_S:.0f} s"
            if response.status_code != 200:
                return times, f"HTTP {response.status_code}: {response.text[:200]}"
            times.append(time.perf_counter() - began)
    return times, None


def _result(bench: Bench, runs: list[SizeRun], notes: list[str]) -> ScenarioResult:
    url_rows, inline_rows, base_rows = [], [], []
    for r in runs:
        w = r.wrk
        url_rows.append(
            [
                f"{r.commits:,}",
                mb(r.pack_bytes),
                str(len(r.url.latencies)),
                ms(r.url.p(50)),
                ms(r.url.p(99)),
                _statuses(r.url),
                f"{w.requests_per_s:,.0f}",
                f"{w.latency_ms.get('50%', 0):.1f}",
                f"{w.latency_ms.get('99%', 0):.1f}",
                f"{w.non_2xx + w.socket_errors} / {w.not_hit}",
                f"{r.ceiling.requests_per_s:,.0f}",
                f"{_share_of_bare(r):.0%}",
            ]
        )
        inline_rows.append(
            [
                f"{r.commits:,}",
                mb(r.pack_bytes),
                str(len(r.inline.latencies)),
                ms(r.inline.p(50, first_byte=True)),
                ms(r.inline.p(50)),
                f"{r.pack_bytes / 1e6 / r.inline.p(50):.0f}",
                _statuses(r.inline),
            ]
        )
        uncached = min(r.uncached) if r.uncached else None
        base_rows.append(
            [
                f"{r.commits:,}",
                f"{secs(r.repo.push_seconds)} ({r.repo.pushes})",
                secs(r.warm_s) if r.warm_s is not None else "not warm",
                secs(uncached) if uncached else (r.uncached_error or "-"),
                ms(r.url.p(50)),
                f"{uncached / r.url.p(50):,.0f}x" if uncached else "-",
            ]
        )
    tables = [
        Table(
            [
                "commits",
                "pack (MB)",
                "requests",
                "1 client p50 (ms)",
                "1 client p99 (ms)",
                "answers",
                "64 conns answers/s",
                "64 conns p50 (ms)",
                "64 conns p99 (ms)",
                "errors / not HIT",
                "bare ASGI answers/s",
                "share of bare",
            ],
            url_rows,
            caption='**URL form** (`capabilities: ["mpack-url"]`): one DB lookup plus one '
            "presign. 1 client = sequential requests on one keep-alive connection "
            "(httpx); 64 conns = `wrk -t2 -c64` POSTing the same msgpack body. **Bare "
            "ASGI** (`bench/bare_asgi.py`, the ceiling): a plain ASGI app that reads "
            "the body and answers a fixed msgpack map, under uvicorn with the API's "
            "settings, measured by the same `wrk` right after each size.",
        ),
        Table(
            [
                "commits",
                "pack (MB)",
                "requests",
                "first byte p50 (ms)",
                "whole answer p50 (ms)",
                "MB/s",
                "answers",
            ],
            inline_rows,
            caption="**Inline form** (no capabilities: a legacy client): the stored pack "
            "streamed from storage with fresh branch heads appended.",
        ),
        Table(
            [
                "commits",
                "push (s) (pushes)",
                "push end → all packs cached (s)",
                "uncached answer, best (s)",
                "warm URL answer p50 (ms)",
                "uncached / warm",
            ],
            base_rows,
            caption="**Baseline**: the same clone without the prebuilt cache. `want` = every "
            "head, `have = [root commit]`: never cached, so the hub plans, reads every "
            "blob but the root's, assembles and uploads, per request (the honest cost "
            "of the synchronous path through the same HTTP stack).",
        ),
    ]
    checks = _checks(runs)
    xs = [r.commits for r in runs]
    plots = [
        lines(
            bench.plot_path("warm_fetch_latency.png"),
            "Clone answer latency vs history length",
            "commits (log)",
            "latency (ms, log)",
            xs,
            {
                "URL form, 1 client p50": [r.url.p(50) * 1000 for r in runs],
                "URL form, 1 client p99": [r.url.p(99) * 1000 for r in runs],
                "URL form, 64 conns p99": [r.wrk.latency_ms.get("99%", 0) for r in runs],
                "inline, first byte p50": [r.inline.p(50, True) * 1000 for r in runs],
                "uncached build (baseline)": [
                    min(r.uncached) * 1000 if r.uncached else float("nan") for r in runs
                ],
            },
            logx=True,
            logy=True,
            target=P99_ONE_CLIENT_MS,
            target_label="1-client p99 target",
        ),
        lines(
            bench.plot_path("warm_fetch_throughput.png"),
            "URL-form answers/s at 64 connections",
            "commits (log)",
            "answers per second",
            xs,
            {"wrk -c64": [r.wrk.requests_per_s for r in runs]},
            logx=True,
            target=MIN_ANSWERS_PER_S,
            target_label="target 2,000/s",
        ),
    ]
    notes += [
        f"{r.commits:,} commits: waited {r.quiesce_s:.0f} s for the stack to go idle before "
        "measuring."
        for r in runs
        if r.quiesce_s > 5
    ]
    notes.append(
        "wrk runs on the same 2 cores as the API, PostgreSQL and the worker, so it takes "
        "CPU the hub would otherwise have."
    )
    return ScenarioResult(
        "warm_fetch",
        TITLE,
        "Repos of growing history (`bench/synthetic.py: long_history`: a tree of 4 files, one new "
        "~100-byte blob per commit, the last commit on a second branch so the clone wants two "
        "heads), each pushed through the wire endpoints; measured once the prebuild has recorded "
        "every pack (polled in `musehub_fetch_mpack_cache`) and every answer carries "
        "`X-Musehub-Cache: HIT`.",
        tables=tables,
        checks=checks,
        plots=plots,
        notes=notes,
        raw={"sizes": xs, "wrk": [r.wrk.raw for r in runs]},
    )


def _checks(runs: list[SizeRun]) -> list[Check]:
    p99s = [r.url.p(99) * 1000 for r in runs]
    rates = [r.wrk.requests_per_s for r in runs]
    p99s_64 = [r.wrk.latency_ms.get("99%", float("inf")) for r in runs]
    flat_latency = runs[-1].url.p(99) / runs[0].url.p(99)
    flat_rate = rates[0] / rates[-1] if rates[-1] else float("inf")
    span = f"{runs[0].commits:,} → {runs[-1].commits:,} commits"
    shares = [_share_of_bare(r) for r in runs]
    return [
        Check(
            "URL form answers/s at 64 connections ≥ 50 % of the bare ASGI endpoint's",
            f"worst {min(shares):.0%}",
            min(shares) >= MIN_SHARE_OF_BARE,
        ),
        Check(
            "URL form, 1 client p99 < 10 ms at every size",
            f"worst {max(p99s):.1f} ms",
            max(p99s) < P99_ONE_CLIENT_MS,
        ),
        Check(
            "URL form, ≥ 2,000 answers/s at 64 connections",
            f"worst {min(rates):,.0f}/s",
            min(rates) >= MIN_ANSWERS_PER_S,
        ),
        Check(
            "URL form, p99 < 50 ms at 64 connections",
            f"worst {max(p99s_64):.1f} ms",
            max(p99s_64) < P99_64_MS,
        ),
        Check(
            f"flat across sizes ({span}): 1-client p99 largest/smallest < 1.5",
            f"{flat_latency:.2f}",
            flat_latency < FLAT,
        ),
        Check(
            f"flat across sizes ({span}): answers/s smallest/largest < 1.5",
            f"{flat_rate:.2f}",
            flat_rate < FLAT,
        ),
    ]


def _share_of_bare(run: SizeRun) -> float:
    ceiling = run.ceiling.requests_per_s
    return run.wrk.requests_per_s / ceiling if ceiling else 0.0


def _statuses(run: load.Sequential) -> str:
    return ", ".join(f"{n} x {k}" for k, n in sorted(run.statuses.items()))
