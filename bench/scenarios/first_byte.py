"""Issue 14 item 3: how soon bytes flow when the pack lives on S3, and how long an answer can sit
silent. Behind a proxy with an origin timeout (Cloudflare: 100 s to the first byte; nginx and
the muse 0.1.5 client: 60 s per read), silence is what fails a clone, not total time.

Its own stack: `musehub dev` with its storage on moto's S3 server (a child process), every
storage read slowed by 50 ms as R2's would be. A small repo and the 10x preset (a ~600 MB pack)
are pushed; then, for each:

- the warm URL answer, sequential requests: as flat in repo size as on the local backend;
- the warm inline answer (a legacy client: no capabilities), streamed from S3: time to the
  response headers, to the first body byte, the longest gap between two chunks, the rate;
- baseline: the same object read straight from the S3 endpoint with its presigned URL;
- the cold miss (cache rows deleted): what a client sees while the synchronous build runs, and
  what a second client sees that asks for the same want set a second later (the API runs two
  processes: it joins the build in its process, or waits behind the other process's build and
  then streams a build of its own).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
import msgpack

from bench.context import SMOKE_GABRIEL, Bench
from bench.hub import HEADERS, Hub, PushedRepo, fetch_body
from bench.load import CACHE_HEADER
from bench.result import Check, ScenarioResult, Table, mb, ms, percentile, secs
from bench.s3 import moto_s3
from bench.stack import start_stack
from musehub.settings import ApiSettings

TITLE = "8. First byte from S3"
READ_DELAY_MS = 50
INLINE_RUNS = 3
URL_REQUESTS = 200
FIRST_BYTE_LIMIT_S = 1.0
SILENCE_LIMIT_S = 5.0  # "a few seconds": far below every proxy's and client's read timeout
FLAT_LIMIT = 1.5
TIMEOUT_S = 900.0
WARM_ANSWER_TTL_S = ApiSettings().warm_answer_ttl_seconds
SECOND_CLIENT_AFTER_S = 1.0


@dataclass(frozen=True)
class Stream:
    """One streamed answer, timed from the moment the request was sent."""

    status: int
    cache: str
    headers_s: float
    first_byte_s: float
    longest_silence_s: float  # the wait for the headers and the first byte included
    total_s: float
    size: int

    @property
    def rate_mb_s(self) -> float:
        return self.size / 1e6 / self.total_s if self.total_s else 0.0


async def run(bench: Bench) -> ScenarioResult:
    big_params = bench.preset("gabriel-muse-10x")
    with moto_s3() as s3:
        stack = await asyncio.to_thread(
            start_stack,
            bench.work / "s3-state",
            bench.work / "s3-stack.log",
            settings=s3.env(read_delay_ms=READ_DELAY_MS),
        )
        hub = Hub(stack, storage=s3.settings(read_delay_ms=READ_DELAY_MS))
        try:
            small = await hub.push("s3-small", SMOKE_GABRIEL.generate())
            big = await hub.push("s3-big", big_params.generate())
            for repo in (small, big):
                if await hub.wait_warm(repo, [repo.want], timeout=TIMEOUT_S) is None:
                    raise RuntimeError(f"the prebuild of {repo.slug} did not finish")
            await hub.quiesce()
            async with httpx.AsyncClient(timeout=TIMEOUT_S, headers=HEADERS) as client:
                measured = {repo.slug: await _measure_warm(client, repo) for repo in (small, big)}
                await hub.drop_cache(big.repo_id)
                await asyncio.sleep(2 * WARM_ANSWER_TTL_S + 0.5)  # both processes' memos expire
                await hub.quiesce()
                cold_body = fetch_body(big.want, url_form=False)
                cold, second = await asyncio.gather(
                    _timed_stream(client, "POST", f"{big.url}/fetch", cold_body),
                    _timed_stream(
                        client, "POST", f"{big.url}/fetch", cold_body, after=SECOND_CLIENT_AFTER_S
                    ),
                )
        finally:
            await hub.aclose()
            await asyncio.to_thread(stack.stop)
    return _result(small, big, measured, cold, second, big_params.commits)


@dataclass(frozen=True)
class Warm:
    url_p50_s: float
    inline: Stream  # the median run by first byte
    direct: Stream


async def _measure_warm(client: httpx.AsyncClient, repo: PushedRepo) -> Warm:
    url_body = fetch_body(repo.want)
    times = []
    for _ in range(URL_REQUESTS):
        began = time.perf_counter()
        answer = await client.post(f"{repo.url}/fetch", content=url_body)
        times.append(time.perf_counter() - began)
        answer.raise_for_status()
    pack_url = msgpack.unpackb(answer.content)["mpack_url"]
    inline_body = fetch_body(repo.want, url_form=False)
    runs = [
        await _timed_stream(client, "POST", f"{repo.url}/fetch", inline_body)
        for _ in range(INLINE_RUNS)
    ]
    runs.sort(key=lambda s: s.first_byte_s)
    direct = await _timed_stream(client, "GET", pack_url, None)
    return Warm(percentile(times, 50), runs[len(runs) // 2], direct)


async def _timed_stream(
    client: httpx.AsyncClient, method: str, url: str, body: bytes | None, after: float = 0.0
) -> Stream:
    await asyncio.sleep(after)
    began = time.perf_counter()
    async with client.stream(method, url, content=body) as response:
        headers_at = last = time.perf_counter()
        longest, first, size = headers_at - began, None, 0
        # As the bytes arrive: aiter_raw(n) would gather n bytes first and time those, not the
        # silence a proxy or a client's read timeout sees.
        async for chunk in response.aiter_raw():
            now = time.perf_counter()
            if chunk:
                longest = max(longest, now - last)
                first = now if first is None else first
                size += len(chunk)
                last = now
        ended = time.perf_counter()
    return Stream(
        response.status_code,
        response.headers.get(CACHE_HEADER, "-"),
        headers_at - began,
        (first or ended) - began,
        longest,
        ended - began,
        size,
    )


def _result(
    small: PushedRepo,
    big: PushedRepo,
    measured: dict[str, Warm],
    cold: Stream,
    second: Stream,
    big_commits: int,
) -> ScenarioResult:
    rows = []
    for repo in (small, big):
        warm = measured[repo.slug]
        answers = (("inline, from the hub", warm.inline), ("GET straight from S3", warm.direct))
        for label, s in answers:
            rows.append(
                [
                    repo.slug,
                    label,
                    f"{s.status} {s.cache}",
                    mb(s.size),
                    ms(s.headers_s),
                    ms(s.first_byte_s),
                    ms(s.longest_silence_s),
                    secs(s.total_s),
                    f"{s.rate_mb_s:.0f}",
                ]
            )
    rows.append(
        [
            big.slug,
            "inline, cold miss (rows deleted)",
            f"{cold.status} {cold.cache}",
            mb(cold.size),
            ms(cold.headers_s),
            ms(cold.first_byte_s),
            ms(cold.longest_silence_s),
            secs(cold.total_s),
            f"{cold.rate_mb_s:.0f}",
        ]
    )
    rows.append(
        [
            big.slug,
            f"inline, cold, a second client {SECOND_CLIENT_AFTER_S:.0f} s later",
            f"{second.status} {second.cache}",
            mb(second.size),
            ms(second.headers_s),
            ms(second.first_byte_s),
            ms(second.longest_silence_s),
            secs(second.total_s),
            f"{second.rate_mb_s:.0f}",
        ]
    )
    streams = Table(
        [
            "repo",
            "answer",
            "status",
            "MB",
            "headers (ms)",
            "first byte (ms)",
            "longest silence (ms)",
            "total (s)",
            "MB/s",
        ],
        rows,
        caption=f"Storage: moto's S3 server, {READ_DELAY_MS} ms added to every read the hub "
        f"makes (the straight GET has no added delay). Inline answers: median of "
        f"{INLINE_RUNS} runs by first byte. `{big.slug}`: the 10x preset, "
        f"{big_commits:,} commits.",
    )
    small_url, big_url = measured[small.slug].url_p50_s, measured[big.slug].url_p50_s
    url = Table(
        ["repo", "warm URL answer p50 (ms)", "ratio to the small repo"],
        [
            [small.slug, ms(small_url), "1.00"],
            [big.slug, ms(big_url), f"{big_url / small_url:.2f}"],
        ],
        caption=f"{URL_REQUESTS} sequential `POST /fetch` (mpack-url), one connection.",
    )
    warm_big = measured[big.slug].inline
    return ScenarioResult(
        "first_byte",
        TITLE,
        __doc__ or "",
        tables=[streams, url],
        checks=[
            Check(
                f"first byte of the 10x inline answer from S3 < {FIRST_BYTE_LIMIT_S:.0f} s",
                f"{ms(warm_big.first_byte_s)} ms ({mb(warm_big.size)} MB)",
                warm_big.status == 200 and warm_big.first_byte_s < FIRST_BYTE_LIMIT_S,
            ),
            Check(
                f"warm inline answer never silent for {SILENCE_LIMIT_S:.0f} s",
                f"longest silence {ms(warm_big.longest_silence_s)} ms",
                warm_big.longest_silence_s < SILENCE_LIMIT_S,
            ),
            Check(
                f"cold miss never silent for {SILENCE_LIMIT_S:.0f} s",
                f"longest silence {ms(cold.longest_silence_s)} ms ({cold.status} {cold.cache})",
                cold.cache == "MISS" and cold.longest_silence_s < SILENCE_LIMIT_S,
            ),
            Check(
                f"a second cold client never silent for {SILENCE_LIMIT_S:.0f} s",
                f"longest silence {ms(second.longest_silence_s)} ms "
                f"({second.status} {second.cache})",
                second.status == 200 and second.longest_silence_s < SILENCE_LIMIT_S,
            ),
            Check(
                f"warm URL answer on S3 flat in repo size (10x / small < {FLAT_LIMIT})",
                f"{big_url / small_url:.2f}",
                big_url / small_url < FLAT_LIMIT,
            ),
        ],
        raw={
            "read_delay_ms": READ_DELAY_MS,
            "cold": cold.__dict__,
            "cold_second_client": second.__dict__,
            "warm": {
                k: {
                    "url_p50_s": w.url_p50_s,
                    "inline": w.inline.__dict__,
                    "direct": w.direct.__dict__,
                }
                for k, w in measured.items()
            },
        },
    )
