"""The names in `musehub.contract` are in running workflows' histories and in the GC schedule:
a rename would strand them, so they are pinned here."""

from __future__ import annotations

import subprocess
import sys
from typing import get_args

from musehub import contract


def test_workflow_signal_query_and_error_names_are_the_ones_in_histories() -> None:
    assert (contract.PREBUILD_WORKFLOW, contract.GC_WORKFLOW) == (
        "PrebuildFetchMPacks",
        "GarbageCollectFetchMPacks",
    )
    assert (contract.TIPS_PUSHED_SIGNAL, contract.REBUILD_SIGNAL, contract.STATUS_QUERY) == (
        "tips_pushed",
        "rebuild",
        "status",
    )
    assert contract.prebuild_workflow_id("r1") == "prebuild-fetch-mpacks/r1"
    errors = [
        contract.BLOB_MISSING,
        contract.TIP_GONE,
        contract.SUPERSEDED,
        contract.STAGING_LOST,
        contract.PACK_GONE,
        contract.BAD_BUILD_ID,
        contract.GC_INCOMPLETE,
    ]
    assert errors == list(get_args(contract.ErrorType))  # every type named once, and no other


def test_the_contract_imports_neither_workflows_nor_activities() -> None:
    """The API and the CLI import it: it must not pull in the worker's code."""
    probe = (
        "import sys, musehub.contract; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('workflows', 'activities')))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
