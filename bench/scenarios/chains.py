"""Issue 13: pack chains. A push costs what it changed, and pulls are answered from the cache
like clones. Each target beside its baseline, measured in the same run:

1. One-commit push (gabriel preset and a larger one): the pack bytes the prebuild wrote for it
   against the push's own new bytes, and push → every tip servable. Baseline: what every push
   cost before chains, the head set's full pack built and uploaded (`build_and_upload`).
2. 50 clients pulling the newest push at once (URL form): all `HIT`, no build, p50. Baseline:
   the same pull with a `have` that holds no chain position (built, `UNCACHED`).
3. 20 one-commit pushes, then a pull from each earlier tip: all `HIT`.
4. Warm pull answer time against history length (`long_history`, `have` = one id).
5. Clone from the chain against one base of the same history, end to end through the wire."""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgpack

from bench import chain_clone, load
from bench.context import Bench
from bench.hub import HEADERS, Hub, PushedRepo, fetch_body
from bench.plots import lines
from bench.result import Check, ScenarioResult, Table, mb, ms, percentile, ratio, secs
from bench.synthetic import long_history, next_commit
from musehub.services.mpack_cache import cache_id_for
from musehub.synth.repo import Record

TITLE = "7. Pack chains"
OWN_FACTOR = 2
OWN_SLACK = 64 * 1024
SERVABLE_S = 1.0
HERD = 50
HERD_P50_MS = 50.0
FLAT = 1.5
CLONE_WITHIN = 1.10
JOINED_WITHIN = 1.02
WARM_TIMEOUT_S = 900.0
SERVABLE_TIMEOUT_S = 300.0
PULL_ROUNDS = 6  # the warm pulls vs history length, every size in turn each round
POLL_S = 0.02
ANSWERS_EXPIRE_S = 2.5  # > 2 x MUSEHUB_API_WARM_ANSWER_TTL_SECONDS: kept answers are gone
TIMEOUT_S = 600.0
CHAIN_CAPS = ["mpack-chain"]


@dataclass
class Line:
    """A branch of a pushed repo that the scenario pushes one commit at a time onto."""

    repo: PushedRepo
    branch: str
    tip: Record
    manifest: dict[str, str]
    blob_size: int
    records: dict[str, Record]  # every commit of the repo we know, by id
    pushed: int = 0

    @classmethod
    def of(cls, repo: PushedRepo, branch: str, blob_size: int) -> Line:
        records = {str(c["commit_id"]): c for c in repo.synth.commits}
        tip = records[repo.heads[branch]]
        manifest = dict(repo.synth.snapshots[tip["snapshot_id"]]["manifest"])
        return cls(repo, branch, tip, manifest, blob_size, records)

    @property
    def tip_id(self) -> str:
        return str(self.tip["commit_id"])

    def ancestors(self, commit_id: str) -> list[str]:
        """First-parent ancestors of `commit_id`, nearest first (as far as we know them)."""
        out = []
        parent = self.records[commit_id].get("parent_commit_id")
        while parent and parent in self.records:
            out.append(str(parent))
            parent = self.records[parent].get("parent_commit_id")
        return out


@dataclass
class PushCost:
    commits: int  # in the repo before this push
    tip_before: str
    own_bytes: int  # the new blob plus the commit and snapshot records
    push_s: float
    servable_s: float | None  # push answered -> a live row for every tip and the head set
    head_set_s: float | None  # push answered -> the head set's row (what a clone asks for)
    written_db: int  # bytes of parts and one-pack objects recorded since the push
    written_storage: int  # bytes of new objects under mpacks/<repo>/ in storage
    new_parts: int
    top_up: int  # bytes of the new parts linked at the pushed position (the rest: compactions)

    @property
    def written(self) -> int:
        return max(self.written_db, self.written_storage)

    @property
    def limit(self) -> int:
        return OWN_FACTOR * self.own_bytes + OWN_SLACK


@dataclass
class Answers:
    """Answers to one kind of `POST /fetch`."""

    latencies: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)  # "200 HIT" -> count
    parts: list[int] = field(default_factory=list)  # parts per chain-form answer
    builds_logged: int = 0

    def add(self, status: str, seconds: float) -> None:
        self.latencies.append(seconds)
        self.statuses[status] = self.statuses.get(status, 0) + 1

    @property
    def all_hits(self) -> bool:
        return bool(self.latencies) and set(self.statuses) == {"200 HIT"}

    def p(self, pct: float) -> float:
        return percentile(self.latencies, pct)

    def summary(self) -> str:
        return _statuses(self.statuses)

    def row(self, label: str) -> list[str]:
        return pulls_row(label, self.latencies, self.statuses, str(self.builds_logged))


def pulls_row(
    label: str, latencies: list[float], statuses: dict[str, int], builds: str
) -> list[str]:
    """A row of the pulls table: answers, builds logged, p50, p90, slowest."""
    return [
        label,
        _statuses(statuses) or "not measured",
        builds,
        ms(percentile(latencies, 50)),
        ms(percentile(latencies, 90)),
        ms(max(latencies)) if latencies else "-",
    ]


def _statuses(statuses: dict[str, int]) -> str:
    return ", ".join(f"{n} x {k}" for k, n in sorted(statuses.items()))


@dataclass
class Report:
    tables: list[Table] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)


async def run(bench: Bench) -> ScenarioResult:
    out = Report()
    presets = [("gabriel-muse", "chains-gabriel"), ("gabriel-muse-10x", "gabriel-10x")]
    push_rows: list[list[str]] = []
    gabriel: Line | None = None
    previous_tip = ""  # the tip before the newest push, for the pulls
    pushes = bench.pick(1, 3)
    for preset, slug in presets:
        try:
            line = await _line_of_preset(bench, preset, slug, out.notes)
            costs = [await _push_one(bench.hub, line, settle=True) for _ in range(pushes)]
            rebuild_s, rebuild_bytes = await _full_rebuild(bench.hub, line.repo)
        except Exception as exc:  # one preset failing must not lose the other's numbers
            out.notes.append(f"**{preset}: not measured**: {type(exc).__name__}: {exc}")
            out.checks.append(Check(f"{preset}: one-commit push", "not measured", None))
            continue
        if gabriel is None:
            gabriel, previous_tip = line, costs[-1].tip_before
        push_rows += [
            _push_row(preset, bench.smoke, n, c, rebuild_s, rebuild_bytes)
            for n, c in enumerate(costs, 1)
        ]
        out.checks += _push_checks(preset, costs, rebuild_s)
    out.tables.append(
        Table(
            [
                "preset",
                "push",
                "commits",
                "push's own new bytes (KB)",
                "pack bytes written (KB)",
                "of which the top-up (KB)",
                "new parts",
                "written / (2 x own + 64 KiB)",
                "push (s)",
                "push end → head set servable (s)",
                "push end → every tip servable (s)",
                "baseline: head set full rebuild (s)",
                "baseline: bytes written (MB)",
                "baseline / chain bytes",
            ],
            push_rows,
            caption=f"{pushes} one-commit push(es) per preset (one file of the tip's tree replaced "
            "by a fresh blob of the preset's mean file size), pushed to `main` the way "
            "`muse push` does, the first once the repo's prebuild and compactions are done, "
            "each next once the stack is idle again. Own new bytes: the blob plus the "
            "commit and snapshot records as msgpack. Pack bytes written: the larger of "
            "the parts and one-pack objects recorded in `musehub_mpack_parts` / "
            "`musehub_fetch_mpack_cache` that were not there before, and the new objects "
            "under `mpacks/<repo>/` in storage, once the stack is idle again; the top-up: "
            "the new parts linked at the pushed position (the rest is a compaction the "
            "prebuild started, `CompactMPackChain`, rewriting a base). Servable: "
            f"polled every {POLL_S * 1000:.0f} ms from the push's answer until each current "
            "tip and the head set has a live row (the new tip's and the new head set's rows "
            "are new, their chains ending with the position this push made). "
            "**Baseline** (before chains every push rebuilt every pack): the new head set's "
            "full pack planned, assembled and uploaded by `build_and_upload(want, [])` "
            "in-process, once the stack is idle; the old prebuild also built one per tip.",
        )
    )
    if gabriel is None:
        raise RuntimeError("no preset could be pushed: " + " / ".join(out.notes))
    line = gabriel
    parts: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("50 pulls of the newest push", lambda: _herd(bench, line, previous_tip, out)),
        ("a pull from each of the last pushes", lambda: _recent_pushes(bench, line, out)),
        ("clone from the chain vs one base", lambda: _clone_chain_vs_base(bench, line, out)),
        ("warm pull vs history length", lambda: _warm_pull_vs_size(bench, out)),
    ]
    for name, measure in parts:
        try:  # one part failing must not lose the others' numbers
            await measure()
        except Exception as exc:
            out.notes.append(f"**{name}: not measured**: {type(exc).__name__}: {exc}")
            out.checks.append(Check(name, f"not measured ({type(exc).__name__})", None))
    out.notes.append(
        "Everything runs on the same 2 cores: the API, PostgreSQL, Temporal, the "
        "worker and the load generator (this process)."
    )
    return ScenarioResult(
        "chains",
        TITLE,
        "Issue 13's benchmarks. Pack chains: a base plus one top-up per push, so a push writes "
        "what it changed and a pull from a recent push is the rest of the chain after the "
        "client's position, one lookup, no build. Each target is measured beside its "
        "baseline (the full rebuild, the uncached pull, one base) in the same run.",
        tables=out.tables,
        checks=out.checks,
        plots=out.plots,
        notes=out.notes,
        raw=out.raw,
    )


# -- 1. one-commit push: bytes written and time to servable ------------------------------------


async def _line_of_preset(bench: Bench, preset: str, slug: str, notes: list[str]) -> Line:
    """`main` of the preset's repo: the one push_to_warm pushed this run when there is one (its
    last scenario is done with it), else a fresh push; warm and idle."""
    hub = bench.hub
    params = bench.preset(preset)
    repo = hub.pushed.get(slug)
    if repo is None:
        repo = await hub.push(slug, params.generate())
    else:
        notes.append(f"{preset}: reuses `{slug}`, pushed by an earlier scenario of this run.")
    if await hub.wait_warm(repo, timeout=WARM_TIMEOUT_S) is None:
        raise RuntimeError(f"the prebuild of {slug} did not finish within {WARM_TIMEOUT_S:.0f} s")
    await hub.quiesce()
    return Line.of(repo, repo.synth.default_branch, params.file_size)


async def _push_one(hub: Hub, line: Line, *, settle: bool) -> PushCost:
    """Push one commit onto the line; measure what the hub wrote for it and when every tip was
    servable. `settle`: wait for the stack to go idle (compactions) before counting bytes."""
    repo = line.repo
    commit, snapshot, blobs = next_commit(
        line.tip, line.manifest, line.pushed, blob_size=line.blob_size
    )
    own = (
        sum(len(b) for b in blobs.values())
        + len(msgpack.packb(commit))
        + len(msgpack.packb(snapshot))
    )
    stored_before = await hub.pack_objects(repo.repo_id)
    recorded_before = await hub.recorded_packs(repo.repo_id)
    commits, tip_before = len(line.records), line.tip_id
    push_s = await hub.push_commit(repo, line.branch, commit, snapshot, blobs)
    line.records[str(commit["commit_id"])] = commit
    line.tip, line.manifest, line.pushed = commit, snapshot["manifest"], line.pushed + 1
    head_set_s, servable_s = await _wait_servable(hub, repo)
    if settle:
        await hub.quiesce()
    recorded = await hub.recorded_packs(repo.repo_id)
    stored = await hub.pack_objects(repo.repo_id)
    new_recorded = {k: n for k, n in recorded.items() if k not in recorded_before}
    at_push = await hub.parts_at(repo.repo_id, line.tip_id)
    return PushCost(
        commits,
        tip_before,
        own,
        push_s,
        servable_s,
        head_set_s,
        sum(new_recorded.values()),
        sum(n for k, n in stored.items() if k not in stored_before),
        len(new_recorded),
        sum(n for k, n in new_recorded.items() if k in at_push),
    )


async def _wait_servable(hub: Hub, repo: PushedRepo) -> tuple[float | None, float | None]:
    """Seconds from the push's answer until the head set's row, and until every target's row,
    was seen (None: not within SERVABLE_TIMEOUT_S)."""
    targets, head_set = repo.targets, cache_id_for(repo.repo_id, repo.want)
    deadline = time.monotonic() + SERVABLE_TIMEOUT_S
    head_set_s = None
    while time.monotonic() < deadline:
        found = await hub.cached(repo.repo_id, targets)
        seen = time.monotonic() - repo.push_ended
        if head_set_s is None and head_set in found:
            head_set_s = seen
        if len(found) == len(targets):
            return head_set_s, seen
        await asyncio.sleep(POLL_S)
    return head_set_s, None


async def _full_rebuild(hub: Hub, repo: PushedRepo) -> tuple[float, int]:
    """The baseline: the head set's whole pack built and uploaded, as every push did before
    chains (its object is left for the orphan sweep, like an uncached build's)."""
    await hub.quiesce()
    began = time.perf_counter()
    built = await hub.build_head_set(repo)
    return time.perf_counter() - began, built.digest.size


def _push_row(
    preset: str, smoke: bool, n: int, cost: PushCost, rebuild_s: float, rebuild_bytes: int
) -> list[str]:
    return [
        f"{preset}{' (smoke stand-in)' if smoke else ''}",
        str(n),
        f"{cost.commits:,}",
        _kb(cost.own_bytes),
        f"{_kb(cost.written)}{_differs(cost)}",
        _kb(cost.top_up),
        str(cost.new_parts),
        f"{cost.written / cost.limit:.2f}",
        secs(cost.push_s),
        _servable(cost.head_set_s),
        _servable(cost.servable_s),
        secs(rebuild_s),
        mb(rebuild_bytes),
        f"{rebuild_bytes / cost.written:,.0f}x" if cost.written else "-",
    ]


def _push_checks(preset: str, costs: list[PushCost], rebuild_s: float) -> list[Check]:
    worst = max(costs, key=lambda c: c.written / c.limit)
    servable = [c.servable_s if c.servable_s is not None else float("inf") for c in costs]
    median = statistics.median(servable)
    each = ", ".join(_servable(c.servable_s) for c in costs)
    return [
        Check(
            f"{preset}: one-commit push writes ≤ 2 x its own new bytes + 64 KiB",
            f"worst of {len(costs)}: {_kb(worst.written)} KB vs {_kb(worst.limit)} KB (own "
            f"{_kb(worst.own_bytes)} KB; the top-up alone {_kb(worst.top_up)} KB, the rest "
            "a compaction)"
            if worst.written > worst.top_up
            else f"worst of {len(costs)}: {_kb(worst.written)} KB vs {_kb(worst.limit)} KB",
            worst.written <= worst.limit,
        ),
        Check(
            f"{preset}: push → every tip servable < 1 s",
            f"median of {len(costs)}: {secs(median)} s ({each}; full rebuild of the head set: "
            f"{secs(rebuild_s)} s)",
            median < SERVABLE_S,
        ),
    ]


# -- 2. 50 clients pulling the newest push at once ---------------------------------------------


async def _herd(bench: Bench, line: Line, previous: str, out: Report) -> None:
    hub = bench.hub
    repo = line.repo
    await hub.quiesce()
    url = f"{repo.url}/fetch"
    body = fetch_body([line.tip_id], [previous])
    # The first herd is the API processes' first fetches of the run: each process's first
    # answer pays its start-up (connections, statements, code paths never run), and the other
    # requests wait on it (one lookup per want set). The herd measured comes once the kept
    # answer and chain have expired (2 x the 1 s TTL), so it needs a lookup again, as the herd
    # after each push does on a hub that has been answering for a while.
    first = await _at_once(hub, url, body, HERD, bench.work)
    await asyncio.sleep(ANSWERS_EXPIRE_S)
    herd = await _at_once(hub, url, body, HERD, bench.work)
    await hub.quiesce()
    alone = await asyncio.to_thread(load.sequential, url, body, HERD)
    await hub.quiesce()
    steady = await asyncio.to_thread(
        load.wrk, url, body, bench.work, connections=HERD, seconds=bench.pick(1, 5)
    )
    # Each from another commit: the same uncached pull again within a minute would be answered
    # with the pack the first one built (`pull_packs`), not built.
    strangers = await _no_positions(hub, line, previous, bench.pick(2, 5))
    uncached = Answers()
    if strangers:
        await hub.quiesce()
        for stranger in strangers:
            _merge(uncached, await _one_by_one(hub, url, fetch_body([line.tip_id], [stranger]), 1))
    else:
        out.notes.append(
            "No ancestor of the previous tip outside every chain position was "
            "found: the uncached baseline was not measured."
        )
    rows = [
        herd.row(f"{HERD} at once, have = the previous tip (the answer not kept: a lookup)"),
        first.row(
            f"the same {HERD} at once before it: the API processes' first fetches of the run"
        ),
        pulls_row(
            f"1 client, {HERD} one after another on one connection, the same pull",
            alone.latencies,
            alone.statuses,
            "-",
        ),
        [
            f"`wrk -t2 -c{HERD}` for {bench.pick(1, 5)} s, the same pull "
            f"({steady.requests_per_s:,.0f} answers/s)",
            f"{steady.requests:,} answers, {steady.non_2xx + steady.socket_errors} errors, "
            f"{steady.not_hit} not HIT",
            "-",
            f"{steady.latency_ms.get('50%', 0):.1f}",
            f"{steady.latency_ms.get('90%', 0):.1f}",
            f"{steady.latency_ms.get('99%', 0):.1f} (p99)",
        ],
        uncached.row(
            f"baseline: {len(strangers)} one by one, have = an older commit each (no chain "
            "position)"
        ),
    ]
    out.tables.append(
        Table(
            [
                "pulls (URL form, want = the newest tip)",
                "answers",
                "builds logged",
                "p50 (ms)",
                "p90 (ms)",
                "slowest (ms)",
            ],
            rows,
            caption=f'`POST /fetch` with `capabilities: ["mpack-url"]` on `{repo.slug}` right '
            f"after its last one-commit push above: {HERD} clients (one connection each, "
            "opened beforehand with a `GET /health`) send the pull at the same moment, as CI "
            "runners do after a push (from a process of their own, `bench/herd_client.py`, "
            "raw sockets: in this process, 50 httpx clients on one event loop measured "
            "mostly themselves); then the same pull from one client, one request "
            f"after another, and from `wrk` holding {HERD} connections busy. Builds logged: "
            "`cache=MISS` or `UNCACHED` lines of the API log. **Baseline**: the same pull "
            "with a `have` that holds no position of the chain (another older commit for "
            "each request), so the hub plans, assembles and uploads a pack for each, as "
            "every pull did before chains (before chains, 50 of those at once would each "
            "build, two per repository at a time, the rest refused with 503; now identical "
            "ones share one build, `pull_packs`).",
        )
    )
    p50 = herd.p(50) * 1000
    out.checks += [
        Check(
            f"{HERD} clients pulling the newest push at once: all HIT, 0 builds",
            f"{herd.summary()}; {herd.builds_logged + first.builds_logged} builds logged",
            herd.all_hits and first.all_hits and herd.builds_logged + first.builds_logged == 0,
        ),
        Check(
            f"{HERD} clients pulling the newest push at once: p50 < 50 ms (URL form)",
            f"{p50:.1f} ms (the API processes' first fetches: {ms(first.p(50))} ms; "
            f"one client alone: {ms(alone.p(50))} ms; {HERD} connections under "
            f"wrk: {steady.latency_ms.get('50%', 0):.1f} ms; uncached pull: "
            f"{ms(uncached.p(50)) if uncached.latencies else '-'} ms)",
            p50 < HERD_P50_MS,
        ),
    ]


async def _at_once(hub: Hub, url: str, body: bytes, clients: int, work: Path) -> Answers:
    """`clients` pulls sent together, each on its own already open connection, by a process of
    their own (`bench/herd_client.py`: raw sockets, microseconds of client CPU per answer), so
    the times are the hub's and not this process's event loop's."""
    out = Answers()
    body_file = work / "herd-body.msgpack"
    body_file.write_bytes(body)
    logged = hub.fetch_outcomes_logged()
    headers = [f"{name}: {value}" for name, value in HEADERS.items()]
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.herd_client",
        url,
        str(body_file),
        str(clients),
        *headers,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(child.communicate(), TIMEOUT_S)
    if child.returncode != 0:
        raise RuntimeError(f"herd_client failed: {stderr.decode(errors='replace')[-500:]}")
    for status, cache, seconds in json.loads(stdout)["answers"]:
        out.add(f"{status} {cache}", float(seconds))
    out.builds_logged = await _builds_since(hub, logged)
    return out


async def _one_by_one(
    hub: Hub, url: str, body: bytes, count: int, *, chain_form: bool = False
) -> Answers:
    out = Answers()
    logged = hub.fetch_outcomes_logged()
    async with httpx.AsyncClient(timeout=TIMEOUT_S, headers=HEADERS) as client:
        for _ in range(count):
            began = time.perf_counter()
            response = await client.post(url, content=body)
            seconds = time.perf_counter() - began
            out.add(
                f"{response.status_code} {response.headers.get(load.CACHE_HEADER, '-')}", seconds
            )
            if chain_form and response.status_code == 200:
                out.parts.append(len(msgpack.unpackb(response.content).get("mpack_parts", [])))
    out.builds_logged = await _builds_since(hub, logged)
    return out


async def _builds_since(hub: Hub, before: dict[str, int]) -> int:
    await asyncio.sleep(0.5)  # the API writes its log lines in batches (0.2 s)
    after = hub.fetch_outcomes_logged()
    return sum(after.get(k, 0) - before.get(k, 0) for k in ("MISS", "UNCACHED"))


async def _no_position(hub: Hub, line: Line, previous: str) -> str | None:
    """An ancestor of `previous` that no chain position of the repo is: a `have` the chain
    cannot answer."""
    found = await _no_positions(hub, line, previous, 1)
    return found[0] if found else None


async def _no_positions(hub: Hub, line: Line, previous: str, count: int) -> list[str]:
    """Up to `count` such ancestors, nearest first."""
    positions = await hub.chain_positions(line.repo.repo_id)
    strangers = (c for c in line.ancestors(previous) if (c,) not in positions)
    return list(itertools.islice(strangers, count))


# -- 3. a pull from each of the last 20 pushes -------------------------------------------------


async def _recent_pushes(bench: Bench, line: Line, out: Report) -> None:
    hub = bench.hub
    repo = line.repo
    count = bench.pick(8, 20)
    tips = [line.tip_id]
    stored_before = await hub.pack_objects(repo.repo_id)
    costs = []
    for _ in range(count):
        costs.append(await _push_one(hub, line, settle=False))
        tips.append(line.tip_id)
    await hub.quiesce()
    stored = await hub.pack_objects(repo.repo_id)
    total = sum(n for k, n in stored.items() if k not in stored_before)
    own = sum(c.own_bytes for c in costs)
    servable = [c.servable_s if c.servable_s is not None else float("inf") for c in costs]
    written = [c.written for c in costs]
    url = f"{repo.url}/fetch"
    chain, one_url = Answers(), Answers()
    logged = hub.fetch_outcomes_logged()
    for have in tips[:-1]:
        body = msgpack.packb({"want": [tips[-1]], "have": [have], "capabilities": CHAIN_CAPS})
        answer = await _one_by_one(hub, url, body, 1, chain_form=True)
        _merge(chain, answer)
        _merge(one_url, await _one_by_one(hub, url, fetch_body([tips[-1]], [have]), 1))
    builds = await _builds_since(hub, logged)
    out.tables.append(
        Table(
            [
                "pushes",
                "push end → every tip servable, p50 / worst (s)",
                "bytes written per push, p50 / worst (KB)",
                "own new bytes, all pushes (KB)",
                "new objects in storage, all pushes, after idle (KB)",
                "vs 2 x own + 64 KiB each",
            ],
            [
                [
                    str(count),
                    f"{secs(statistics.median(servable))} / {secs(max(servable))}",
                    f"{_kb(statistics.median(written))} / {_kb(max(written))}",
                    _kb(own),
                    _kb(total),
                    f"{total / (OWN_FACTOR * own + OWN_SLACK * count):.2f}",
                ]
            ],
            caption=f"`{count}` one-commit pushes to `main` of `{repo.slug}`, each sent once the "
            "previous one was servable (no coalescing). Per push: as in the first table, "
            "counted when every tip was servable; all pushes: every object the hub stored "
            "under `mpacks/<repo>/` over the series, compactions included, once idle.",
        )
    )
    out.tables.append(
        Table(
            ["form", "pulls", "answers", "parts per answer", "p50 (ms)", "slowest (ms)"],
            [
                [
                    "`mpack-chain`",
                    str(len(chain.latencies)),
                    chain.summary(),
                    f"{min(chain.parts, default=0)}-{max(chain.parts, default=0)}",
                    ms(chain.p(50)),
                    ms(max(chain.latencies)),
                ],
                [
                    "`mpack-url` (the rest joined into one pack per request when it is several "
                    "parts)",
                    str(len(one_url.latencies)),
                    one_url.summary(),
                    "1",
                    ms(one_url.p(50)),
                    ms(max(one_url.latencies)),
                ],
            ],
            caption=f"A pull from each of the last {count} pushes: want = the newest tip, have = "
            "each earlier tip in turn (one id), one request at a time, in each form. "
            f"Builds logged (`MISS`/`UNCACHED`) over all of them: {builds}.",
        )
    )
    out.checks += [
        Check(
            f"a pull from each of the last {count} pushes of a branch: all HIT",
            f"chain form: {chain.summary()}; URL form: {one_url.summary()}; {builds} builds",
            chain.all_hits and one_url.all_hits and builds == 0,
        ),
        Check(
            f"{count} successive one-commit pushes: each push → every tip servable < 1 s",
            f"p50 {secs(statistics.median(servable))} s, worst {secs(max(servable))} s",
            max(servable) < SERVABLE_S,
        ),
    ]
    out.raw["recent_pushes"] = {
        "servable_s": servable,
        "written": written,
        "own": [c.own_bytes for c in costs],
        "total_stored": total,
    }


def _merge(into: Answers, more: Answers) -> None:
    for status, n in more.statuses.items():
        into.statuses[status] = into.statuses.get(status, 0) + n
    into.latencies += more.latencies
    into.parts += more.parts
    into.builds_logged += more.builds_logged


# -- 5. clone from the chain vs from one base ----------------------------------------------------


async def _clone_chain_vs_base(bench: Bench, line: Line, out: Report) -> None:
    hub = bench.hub
    repo = line.repo
    await hub.quiesce()
    # 11 of each: single clones here spread 0.35-0.55 s on a loaded machine, and a median of 7
    # moved by 20 % between two runs of the same code (a focused run of 9: within 1 %).
    reps = bench.pick(2, 11)
    run = await chain_clone.measure(hub, repo, bench.work, reps)
    rows = [
        [
            f"chain: {run.parts} parts (`mpack-chain` answer, `{run.cache}`)",
            mb(run.chain_bytes),
            secs(run.chain_s),
            _runs(run.timings["chain"]),
            ratio(run.chain_s, run.base_s),
        ],
        [
            "baseline: one base of the same history (`build_and_upload`)",
            mb(run.base_bytes),
            secs(run.base_s),
            _runs(run.timings["base"]),
            "1.0x",
        ],
    ]
    out.tables.append(
        Table(
            [
                "clone of the head set",
                "pack bytes (MB)",
                f"median of {reps} (s)",
                "runs (s)",
                "vs one base",
            ],
            rows,
            caption=f"`{repo.slug}` after the pushes above. Both clones are `musehub clone`'s own "
            "code (`musehub.client.clone.clone`) in this process, end to end through the "
            "wire (`bench/chain_clone.py`): `GET /refs`, the `POST /fetch` it sends "
            "(`mpack-chain`), the packs downloaded (a few at once, small ones ahead) and "
            "decoded while they arrive, the tree checked out. The baseline's `/fetch` answer "
            "is swapped for one part, the same history built into one pack "
            "(`build_and_upload`), served in zstd as the chain's parts are. Runs alternate; "
            "the clones are written to memory (`/dev/shm`) when the machine has it, so the "
            "disk's noise stays out of a difference it plays no part in. Trees and `.muse` "
            "identical: "
            f"{'yes' if run.same_trees else 'NO'}. The client's own CPU (median): "
            f"{secs(run.cpu_s('chain'))} s vs {secs(run.cpu_s('base'))} s. Load average "
            f"{run.load[0]:.1f} → {run.load[1]:.1f}.",
        )
    )
    out.checks.append(
        Check(
            f"the {run.parts}-part chain joined (raw) vs one fresh base of the same history: "
            "≤ 1.02 x its bytes",
            f"{mb(run.chain_raw_bytes)} MB vs {mb(run.base_raw_bytes)} MB "
            f"({run.chain_raw_bytes / run.base_raw_bytes:.3f} x)",
            run.chain_raw_bytes <= JOINED_WITHIN * run.base_raw_bytes,
        )
    )
    out.checks.append(
        Check(
            f"clone from a {run.parts}-part chain vs from one base: within 10 % end to end",
            f"{secs(run.chain_s)} s vs {secs(run.base_s)} s ({run.chain_s / run.base_s - 1:+.0%})",
            run.chain_s <= CLONE_WITHIN * run.base_s and run.same_trees,
        )
    )
    out.raw["clone"] = {"parts": run.parts, **run.timings, "cpu": run.cpu}


# -- 4. warm pull vs history length ----------------------------------------------------------


@dataclass
class SizeRun:
    commits: int
    cost: PushCost
    pulls: Answers
    uncached: Answers
    url: str
    body: bytes  # the warm pull: want = the new tip, have = the previous one
    line: Line
    previous: str


async def _warm_pull_vs_size(bench: Bench, out: Report) -> None:
    sizes = bench.pick([100, 500], [100, 1_000, 10_000, 100_000])
    ready: list[SizeRun] = []
    for commits in sizes:
        try:
            ready.append(await _push_at_size(bench, commits))
        except Exception as exc:
            out.notes.append(
                f"**warm pull, {commits:,} commits: not measured**: {type(exc).__name__}: {exc}"
            )
    runs = await _pulls_in_rounds(bench, ready, out.notes)
    if not runs:
        out.checks.append(
            Check(
                "warm pull answer flat from the smallest to the largest history",
                "no size measured",
                None,
            )
        )
        return
    rows = [
        [
            f"{r.commits:,}",
            _servable(r.cost.head_set_s),
            _servable(r.cost.servable_s),
            _kb(r.cost.written),
            str(len(r.pulls.latencies)),
            ms(r.pulls.p(50)),
            ms(r.pulls.p(99)),
            r.pulls.summary(),
            secs(min(r.uncached.latencies)) if r.uncached.latencies else "-",
            f"{min(r.uncached.latencies) / r.pulls.p(50):,.0f}x" if r.uncached.latencies else "-",
        ]
        for r in runs
    ]
    out.tables.append(
        Table(
            [
                "commits",
                "push end → head set servable (s)",
                "push end → every tip servable (s)",
                "pack bytes written (KB)",
                "pulls",
                "warm pull p50 (ms)",
                "warm pull p99 (ms)",
                "answers",
                "uncached pull, best (s)",
                "uncached / warm",
            ],
            rows,
            caption="`bench/synthetic.py: long_history` repos (those warm_fetch pushed this run "
            "when it ran), then one commit pushed onto `main`; the pull: want = the new tip, "
            "have = the previous tip (one id, so the body is the same size at every length), "
            "URL form, one request at a time on one keep-alive connection, in "
            f"{PULL_ROUNDS} rounds that each pull every size in turn. **Baseline**: the "
            "same pull with have = an older commit that is no chain position (built per "
            "request).",
        )
    )
    first, last = runs[0], runs[-1]
    flat = last.pulls.p(50) / first.pulls.p(50)
    out.checks.append(
        Check(
            f"warm pull answer flat from {first.commits:,} to {last.commits:,} commits: "
            "p50 largest/smallest < 1.5",
            f"{flat:.2f} ({ms(first.pulls.p(50))} → {ms(last.pulls.p(50))} ms)",
            flat < FLAT and all(r.pulls.all_hits for r in runs),
        )
    )
    xs = [r.commits for r in runs]
    out.plots.append(
        lines(
            bench.plot_path("chains_pull.png"),
            "Pull of the newest push vs history length",
            "commits (log)",
            "answer (ms, log)",
            xs,
            {
                "warm pull p50 (chain HIT)": [r.pulls.p(50) * 1000 for r in runs],
                "warm pull p99": [r.pulls.p(99) * 1000 for r in runs],
                "uncached pull (baseline)": [
                    min(r.uncached.latencies) * 1000 if r.uncached.latencies else float("nan")
                    for r in runs
                ],
            },
            logx=True,
            logy=True,
        )
    )


async def _push_at_size(bench: Bench, commits: int) -> SizeRun:
    """A repo of `commits` commits, warm, with one commit pushed on `main` and the stack idle
    again; its pulls are made by `_pulls_in_rounds`."""
    hub = bench.hub
    repo = hub.pushed.get(f"history-{commits}")
    if repo is None:
        repo = await hub.push(f"chains-history-{commits}", long_history(commits))
    if await hub.wait_warm(repo, timeout=WARM_TIMEOUT_S) is None:
        raise RuntimeError(
            f"the prebuild of {repo.slug} did not finish within {WARM_TIMEOUT_S:.0f} s"
        )
    await hub.quiesce()
    line = Line.of(repo, "main", 96)
    previous = line.tip_id
    cost = await _push_one(hub, line, settle=True)
    return SizeRun(
        commits,
        cost,
        Answers(),
        Answers(),
        f"{repo.url}/fetch",
        fetch_body([line.tip_id], [previous]),
        line,
        previous,
    )


async def _pulls_in_rounds(bench: Bench, runs: list[SizeRun], notes: list[str]) -> list[SizeRun]:
    """The warm pulls of every size in `PULL_ROUNDS` rounds, each round every size in turn, so
    whatever drifts on the machine meanwhile (another process's work, the API's caches)
    falls on all sizes alike rather than on whichever was measured first; then each size's
    uncached baseline."""
    per_round = bench.pick(50, 300) // PULL_ROUNDS
    for _ in range(PULL_ROUNDS):
        for run in runs:
            pulls = await asyncio.to_thread(load.sequential, run.url, run.body, per_round)
            for status, count in pulls.statuses.items():
                run.pulls.statuses[status] = run.pulls.statuses.get(status, 0) + count
            run.pulls.latencies.extend(pulls.latencies)
    hub = bench.hub
    for run in runs:
        stranger = await _no_position(hub, run.line, run.previous)
        if stranger is not None:
            body = fetch_body([run.line.tip_id], [stranger])
            run.uncached = await _one_by_one(hub, run.url, body, 1)
        if not run.pulls.all_hits:
            notes.append(f"warm pull, {run.commits:,} commits: answered {run.pulls.summary()}.")
    return runs


# -- formatting --------------------------------------------------------------------------------


def _kb(size: float) -> str:
    return f"{size / 1e3:,.1f}"


def _servable(seconds: float | None) -> str:
    return secs(seconds) if seconds is not None else f"not within {SERVABLE_TIMEOUT_S:.0f} s"


def _differs(cost: PushCost) -> str:
    if cost.written_db == cost.written_storage:
        return ""
    return f" (recorded {_kb(cost.written_db)}, in storage {_kb(cost.written_storage)})"


def _runs(values: list[float]) -> str:
    return ", ".join(secs(v) for v in values)
