"""Issue 6 (part): 50 concurrent cold clones of the same tip set build the pack once."""

from __future__ import annotations

import asyncio
import time

import httpx

from bench.context import Bench
from bench.hub import HEADERS, fetch_body
from bench.load import CACHE_HEADER
from bench.plots import lines
from bench.result import Check, ScenarioResult, Table, ms, percentile, secs

TITLE = "6. Thundering herd"
CLIENTS = 50
TIMEOUT_S = 300.0


async def run(bench: Bench) -> ScenarioResult:
    repo = await bench.gabriel()
    hub = bench.hub
    body = fetch_body(repo.want)
    url = f"{repo.url}/fetch"
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(timeout=TIMEOUT_S, headers=HEADERS, limits=limits) as client:
        await hub.drop_cache(repo.repo_id)
        began = time.perf_counter()
        lone = await client.post(url, content=body)
        lone_s = time.perf_counter() - began
        await hub.drop_cache(repo.repo_id)
        await hub.quiesce()
        logged = hub.fetch_outcomes_logged()

        async def one() -> tuple[str, float]:
            began = time.perf_counter()
            try:
                response = await client.post(url, content=body)
            except httpx.HTTPError as exc:
                return f"error {type(exc).__name__}", time.perf_counter() - began
            return (
                f"{response.status_code} {response.headers.get(CACHE_HEADER, '-')}",
                time.perf_counter() - began,
            )

        answers = await asyncio.gather(*(one() for _ in range(CLIENTS)))
    logged_after = hub.fetch_outcomes_logged()
    outcomes: dict[str, int] = {}
    for outcome, _ in answers:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    latencies = sorted(t for _, t in answers)
    misses = outcomes.get("200 MISS", 0)
    ok = sum(n for k, n in outcomes.items() if k.startswith("200 "))
    builds_logged = logged_after.get("MISS", 0) - logged.get("MISS", 0)
    table = Table(
        [
            "clients",
            "answers",
            "builds logged by the API (cache=MISS)",
            "p50 (ms)",
            "slowest (ms)",
            "one lone cold clone answer (ms)",
            "slowest / lone",
        ],
        [
            [
                str(CLIENTS),
                ", ".join(f"{n} x {k}" for k, n in sorted(outcomes.items())),
                str(builds_logged),
                ms(percentile(latencies, 50)),
                ms(latencies[-1]),
                f"{ms(lone_s)} ({lone.status_code} {lone.headers.get(CACHE_HEADER, '-')})",
                f"{latencies[-1] / lone_s:.2f}",
            ]
        ],
        caption=f"`POST /fetch` (URL form, want = the {len(repo.want)} heads of `{repo.slug}`), "
        f"{CLIENTS} connections opened at once right after the repo's cache rows were "
        "deleted (as if expired).",
    )
    plot = lines(
        bench.plot_path("herd.png"),
        f"{CLIENTS} concurrent cold clones",
        "request (sorted by latency)",
        "answer latency (ms)",
        list(range(1, len(latencies) + 1)),
        {"herd": [t * 1000 for t in latencies]},
        target=lone_s * 1000,
        target_label="one lone cold clone",
    )
    return ScenarioResult(
        "herd",
        TITLE,
        "Baseline: the same cold answer for one client alone. With the build serialised per "
        "want set (a PostgreSQL advisory lock), one request builds and the others wait, then "
        "find the recorded pack: the slowest answer should be about one build, not fifty.",
        tables=[table],
        checks=[
            Check(
                f"{CLIENTS} concurrent cold clones → exactly one build",
                f"{misses} MISS in headers, {builds_logged} logged",
                misses == 1 and builds_logged == 1,
            ),
            Check(f"all {CLIENTS} succeed", f"{ok} / {CLIENTS} HTTP 200", ok == CLIENTS),
        ],
        plots=[plot],
        notes=[f"Lone cold answer: {secs(lone_s)} s."],
    )
