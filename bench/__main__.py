"""`python -m bench`: start a throwaway `musehub dev`, run the scenarios, write BENCHMARKS.md.

python -m bench --out bench/results            # the full run (about an hour on 2 cores)
python -m bench --smoke --out /tmp/bench-smoke # tiny sizes, every scenario, < 1 minute
python -m bench --only warm_fetch,herd         # some scenarios
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from bench.context import Bench
from bench.hub import Hub
from bench.report import load_results, write_report
from bench.result import ScenarioResult
from bench.scenarios import SCENARIOS
from bench.stack import Stack, start_stack
from bench.tools import check_tools

DEFAULT_OUT = Path("bench/results")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"folder for BENCHMARKS.md, results.json and plots ({DEFAULT_OUT})",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes: every scenario runs, in under a minute"
    )
    parser.add_argument(
        "--only", default="", help=f"comma-separated scenarios to run, of: {', '.join(SCENARIOS)}"
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the other scenarios of the report already in --out "
        "(re-run some with --only and update BENCHMARKS.md)",
    )
    parser.add_argument(
        "--install-tools",
        action="store_true",
        help="apt-get install wrk and git if they are missing (needs root)",
    )
    parser.add_argument(
        "--keep-state",
        action="store_true",
        help="keep the stack's temp state folder (logs, database) to look into",
    )
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}")
    args.scenarios = chosen or list(SCENARIOS)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_tools(args.scenarios, install=args.install_tools)
    args.out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="musehub-bench-"))
    started = time.monotonic()
    say(f"state and scratch in {root}")
    stack = start_stack(root / "state", root / "stack.log")
    say(f"musehub dev is up at {stack.base_url} (database {stack.database_url})")
    try:
        results = asyncio.run(run_scenarios(stack, args, root))
    finally:
        say("stopping musehub dev…")
        stack.stop()
        if not args.keep_state:
            shutil.rmtree(root, ignore_errors=True)
    command = "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    stamp = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `{command}`"
    for result in results:
        result.ran_at = stamp
    if args.merge:
        fresh = {r.key for r in results}
        results = [r for r in load_results(args.out) if r.key not in fresh] + results
    path = write_report(
        args.out,
        results,
        command=command,
        smoke=args.smoke,
        wall_seconds=time.monotonic() - started,
    )
    say(f"wrote {path}")
    return 1 if any(r.error for r in results) else 0


async def run_scenarios(stack: Stack, args: argparse.Namespace, root: Path) -> list[ScenarioResult]:
    hub = Hub(stack)
    bench = Bench(hub=hub, smoke=args.smoke, out=args.out, work=root / "work")
    bench.work.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for key in args.scenarios:
            say(f"scenario {key}…")
            begun, load_before = time.monotonic(), os.getloadavg()[0]
            try:
                result = await SCENARIOS[key](bench)
            except Exception:
                result = ScenarioResult(key, key, "", error=traceback.format_exc(limit=8))
                say(f"scenario {key} failed:\n{result.error}")
            result.seconds = time.monotonic() - begun
            result.notes.append(
                f"Machine load average (1 min) {load_before:.1f} at the start, "
                f"{os.getloadavg()[0]:.1f} at the end of this scenario (2 cores; other work on "
                "the machine shows here)."
            )
            say(f"scenario {key} done in {result.seconds:.0f} s")
            results.append(result)
    finally:
        await hub.aclose()
    return results


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
