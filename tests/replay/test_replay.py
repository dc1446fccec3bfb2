"""Workflow code that a deploy replaces must replay the histories the deployed code wrote: a
worker upgraded while a prebuild or a GC run is in flight picks that run up by replaying its
history, and a change that makes different decisions (an activity added, removed or reordered
without `workflow.patched`) fails it with a nondeterminism error instead.

The histories in `histories/` are real runs of the workflows as they were when recorded
(`python -m tests.replay.record`); each is replayed against the current code with Temporal's
`Replayer`, no server needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from musehub.contract import GC_WORKFLOW, PREBUILD_WORKFLOW
from workflows.compaction import CompactMPackChain
from workflows.gc import GarbageCollectFetchMPacks
from workflows.prebuild import PrebuildFetchMPacks

HISTORIES = sorted(Path(__file__).with_name("histories").glob("*.json"))


def load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


def workflow_type(history: WorkflowHistory) -> str:
    started = history.events[0].workflow_execution_started_event_attributes
    return started.workflow_type.name


def test_every_workflow_has_recorded_histories() -> None:
    """An empty folder would let every later change pass unchecked."""
    recorded = {workflow_type(load(path)) for path in HISTORIES}
    assert recorded >= {PREBUILD_WORKFLOW, GC_WORKFLOW}
    for path in HISTORIES:
        events = json.loads(path.read_text())["events"]
        assert events[-1]["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED", path.name


@pytest.mark.parametrize("path", HISTORIES, ids=[path.stem for path in HISTORIES])
async def test_recorded_history_replays_on_the_current_code(path: Path) -> None:
    replayer = Replayer(
        workflows=[PrebuildFetchMPacks, GarbageCollectFetchMPacks, CompactMPackChain]
    )
    result = await replayer.replay_workflow(load(path), raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"
