"""One module per scenario, each `async def run(bench) -> ScenarioResult`, in the order they run:
the pushes of push_to_warm give the later scenarios their gabriel/muse-sized repo, and chains
comes last: it pushes onto repos earlier scenarios pushed (gabriel-10x, history-N)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bench.context import Bench
from bench.result import ScenarioResult
from bench.scenarios import (
    chains,
    clone_vs_git,
    cold_build,
    first_byte,
    herd,
    memory,
    metrics_cost,
    push_to_warm,
    warm_fetch,
)

Scenario = Callable[[Bench], Awaitable[ScenarioResult]]

SCENARIOS: dict[str, Scenario] = {
    "push_to_warm": push_to_warm.run,
    "cold_build": cold_build.run,
    "herd": herd.run,
    "clone_vs_git": clone_vs_git.run,
    "warm_fetch": warm_fetch.run,
    "metrics_cost": metrics_cost.run,
    "memory": memory.run,
    "first_byte": first_byte.run,
    "chains": chains.run,
}
