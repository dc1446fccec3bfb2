"""`CompactMPackChain`: a chain's oldest parts joined into a new base, as a durable job of its
own. Started by the prebuild when a chain it recorded grew past its bound, one at a time per
chain (its id names the cache row). Deterministic code only."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.compaction import CompactionActivities
    from musehub.contract import COMPACT_WORKFLOW, CompactChainInput, CompactChainResult


@workflow.defn(name=COMPACT_WORKFLOW)
class CompactMPackChain:
    @workflow.run
    async def run(self, chain: CompactChainInput) -> CompactChainResult:
        return await workflow.execute_activity_method(
            CompactionActivities.compact,
            chain,
            # Joining copies the parts' bytes: minutes for the biggest repos, heartbeating.
            start_to_close_timeout=timedelta(minutes=30),
            heartbeat_timeout=timedelta(minutes=1),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=2),
                maximum_interval=timedelta(minutes=1),
                maximum_attempts=5,
            ),
        )
