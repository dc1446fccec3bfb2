"""Clone from a pack chain vs from one base of the same history, with `musehub clone`'s own code.

Both sides run `musehub.client.clone.clone` in this process, end to end through the wire:
the `POST /fetch` the client sends (`mpack-chain`, `mpack-refs`), the packs downloaded and
decoded while they arrive, the tree checked out. The chain side takes the hub's answer as it
is (the base and its top-ups); the baseline's `/fetch` goes to the hub too, but its answer is
swapped for one part, the head set's history built into one pack (`build_and_upload`) and
served in zstd like the chain's parts, so the two differ only by the packs. Both use the
client's own HTTP, as `musehub clone` does. Runs alternate (chain, base, base, chain, ...) and
the medians are compared; the working trees must be identical.

Used by scenario 7 (`scenarios/chains.py`), and alone for a focused run:

    python -m bench.chain_clone --pushes 19 --reps 7     # gabriel preset + 19 one-commit pushes
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import msgpack

from bench.hub import HEADERS, Hub, PushedRepo
from musehub.cli.main import CLIENT_GC_THRESHOLDS
from musehub.client.clone import CAPABILITIES, clone
from musehub.client.download import PackPart
from musehub.client.wire import MPackURL, MuseRemote, RemoteRefs
from musehub.mpack.encoding import ZSTD
from musehub.services.encoded_packs import make_copy

PRESIGN_TTL_S = 900
TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Part:
    url: str
    size: int
    sha256: str
    encoding: str | None = None
    decoded_size: int | None = None


@dataclass
class ChainCloneRun:
    parts: int
    cache: str  # the chain answer's X-Musehub-Cache
    chain_bytes: int
    base_bytes: int  # served: the base's zstd copy, as the chain's parts are
    base_raw_bytes: int
    chain_raw_bytes: int  # the parts' decoded bytes: the chain joined raw, against base_raw_bytes
    timings: dict[str, list[float]]
    cpu: dict[str, list[float]]  # the client's CPU seconds (every thread of this process)
    same_trees: bool
    load: tuple[float, float]  # 1-minute load average before and after

    @property
    def chain_s(self) -> float:
        return statistics.median(self.timings["chain"])

    @property
    def base_s(self) -> float:
        return statistics.median(self.timings["base"])

    def cpu_s(self, name: str) -> float:
        return statistics.median(self.cpu[name])


@contextlib.contextmanager
def _answered_with(parts: list[Part] | None) -> Iterator[None]:
    """The client's `/fetch` answer replaced by `parts` when they are given (after the real
    request: both sides pay the hub's answer time). The client keeps its own HTTP (an http://
    hub: `http11.HTTP11Client`), as `musehub clone` does: a transport given to `clone()` would
    put both sides on httpx, whose cost per request a 24-part chain would pay 24 times."""
    if parts is None:
        yield
        return
    real = MuseRemote.head_set_answer

    async def head_set_answer(
        self: MuseRemote, *args: Any, **kwargs: Any
    ) -> tuple[RemoteRefs, MPackURL | None] | None:
        together = await real(self, *args, **kwargs)
        answer = together[1] if together is not None else None
        if together is None or answer is None:
            raise RuntimeError("the hub did not answer the baseline's clone with URLs and refs")
        refs = together[0]
        swapped = tuple(
            PackPart(p.url, p.size, p.sha256, None, p.encoding, p.decoded_size) for p in parts
        )
        return refs, MPackURL(swapped, answer.branch_heads)

    with mock.patch.object(MuseRemote, "head_set_answer", head_set_answer):
        yield


@contextlib.contextmanager
def gc_as_the_command_has_it() -> Iterator[None]:
    """The cycle collector as `musehub clone` sets it (`cli/main.py: _calm_gc`): what is loaded
    frozen, high thresholds. In this process the collector would otherwise walk the whole
    benchmark's heap (the stack's clients, the synthetic repos) again and again during a clone,
    which the command never does: in-process clones read 0.71 s where the command took 0.48 s."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*CLIENT_GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


async def measure(hub: Hub, repo: PushedRepo, work: Path, reps: int) -> ChainCloneRun:
    load_before = os.getloadavg()[0]
    body = msgpack.packb({"want": repo.want, "have": [], "capabilities": list(CAPABILITIES)})
    async with httpx.AsyncClient(timeout=TIMEOUT_S, headers=HEADERS) as client:
        response = await client.post(f"{repo.url}/fetch", content=body)
    response.raise_for_status()
    answer = msgpack.unpackb(response.content, raw=False)
    chain = [Part(p["url"], p["size"], p["sha256"]) for p in answer["mpack_parts"]]
    built = await hub.build_head_set(repo)
    # The base in zstd too, as the hub serves the chain's parts to this client: the two sides
    # differ by the chain only, not by the encoding.
    copy = await make_copy(
        hub.sessions, hub.storage, repo.repo_id, built.key, hub.settings.work_dir
    )
    if copy is None:
        raise RuntimeError(f"no zstd copy of the base {built.key} could be made")
    base = [
        Part(
            await hub.storage.presign_get(copy.key, PRESIGN_TTL_S),
            copy.size,
            copy.sha256,
            ZSTD,
            built.digest.size,
        )
    ]
    folder = Path(tempfile.mkdtemp(prefix="chain-clone-", dir=clone_folder(work)))
    timings: dict[str, list[float]] = {"chain": [], "base": []}
    cpu: dict[str, list[float]] = {"chain": [], "base": []}
    digests: dict[str, set[str]] = {"chain": set(), "base": set()}
    await hub.quiesce()
    try:
        for i in range(reps):
            order: list[tuple[str, list[Part] | None]] = [("chain", None), ("base", base)]
            for name, parts in order if i % 2 == 0 else order[::-1]:
                dest = folder / f"{name}-{i}"
                began, began_cpu = time.perf_counter(), time.process_time()
                with _answered_with(parts), gc_as_the_command_has_it():
                    result = await clone(repo.url, dest, progress=False)
                timings[name].append(time.perf_counter() - began)
                cpu[name].append(time.process_time() - began_cpu)
                if name == "chain" and result.parts != len(chain):
                    raise RuntimeError(f"the clone got {result.parts} parts, not {len(chain)}")
                digests[name].add(await asyncio.to_thread(tree_digest, dest))
                await asyncio.to_thread(shutil.rmtree, dest, True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    same = len(digests["chain"] | digests["base"]) == 1
    raw = sum(int(p.get("decoded_size") or p["size"]) for p in answer["mpack_parts"])
    return ChainCloneRun(
        len(chain),
        response.headers.get("x-musehub-cache", ""),
        sum(p.size for p in chain),
        copy.size,
        built.digest.size,
        raw,
        timings,
        cpu,
        same,
        (load_before, os.getloadavg()[0]),
    )


def clone_folder(work: Path) -> Path:
    """Where the clones are written: memory (`/dev/shm`) when the machine has it. Both sides
    write the same files, so the disk adds nothing to their difference but noise: on this
    machine's ext4, creating files after many deletions varied a clone from 1.0 to 2.6 s."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else work


def tree_digest(root: Path) -> str:
    """The working tree and every record and object in `.muse` (not `repo.json`: it holds the
    clone's own time)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root)
        if relative.name == "repo.json":
            continue
        digest.update(str(relative).encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


# -- a focused run: its own stack, the gabriel preset, N one-commit pushes --------------------


async def _focused(args: argparse.Namespace, root: Path) -> int:
    from bench.context import Bench
    from bench.scenarios.chains import _line_of_preset, _push_one
    from bench.stack import start_stack

    stack = start_stack(root / "state", root / "stack.log")
    try:
        hub = Hub(stack)
        bench = Bench(hub=hub, smoke=args.smoke, out=root, work=root / "work")
        bench.work.mkdir(parents=True, exist_ok=True)
        try:
            notes: list[str] = []
            line = await _line_of_preset(bench, "gabriel-muse", "chain-clone", notes)
            for n in range(args.pushes):
                await _push_one(hub, line, settle=False)
                print(f"push {n + 1}/{args.pushes}", file=sys.stderr, flush=True)
            await hub.quiesce()
            run = await measure(hub, line.repo, bench.work, args.reps)
        finally:
            await hub.aclose()
    finally:
        stack.stop()
    print(
        f"chain: {run.parts} parts ({run.cache}), {run.chain_bytes / 1e6:.1f} MB "
        f"({run.chain_raw_bytes / 1e6:.1f} MB raw); base: {run.base_bytes / 1e6:.1f} MB "
        f"({run.base_raw_bytes / 1e6:.1f} MB raw)"
    )
    for name in ("chain", "base"):
        runs = ", ".join(f"{s:.3f}" for s in run.timings[name])
        print(
            f"{name}: median {statistics.median(run.timings[name]):.3f} s ({runs}); "
            f"client CPU median {run.cpu_s(name):.3f} s"
        )
    print(
        f"chain / base = {run.chain_s / run.base_s:.3f} (client CPU "
        f"{run.cpu_s('chain') / run.cpu_s('base'):.3f}); trees identical: {run.same_trees}; "
        f"load average {run.load[0]:.2f} -> {run.load[1]:.2f}"
    )
    return 0 if run.same_trees else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chain_clone",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--pushes", type=int, default=19, help="one-commit pushes (19: 20 parts)")
    parser.add_argument("--reps", type=int, default=7, help="clones of each kind")
    parser.add_argument("--smoke", action="store_true", help="the small stand-in repo")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="musehub-chain-clone-"))
    try:
        return asyncio.run(_focused(args, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
