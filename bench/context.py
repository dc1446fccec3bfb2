"""What every scenario gets: the hub, the run's size (smoke or full), folders, shared repos."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from bench.hub import Hub, PushedRepo
from musehub.synth import GABRIEL_MUSE, PRESETS, SynthParams

T = TypeVar("T")

# A stand-in for gabriel/muse in smoke runs: same shape, a few seconds end to end.
SMOKE_GABRIEL = SynthParams(commits=60, files=12, file_size=4_000, branches=3, blobs=50)
SMOKE_GABRIEL_10X = SMOKE_GABRIEL.scaled(2)


@dataclass
class Bench:
    hub: Hub
    smoke: bool
    out: Path  # BENCHMARKS.md and the plots
    work: Path  # scratch space, deleted at the end

    def pick(self, smoke: T, full: T) -> T:
        return smoke if self.smoke else full

    def plot_path(self, name: str) -> Path:
        return self.out / name

    def preset(self, name: str) -> SynthParams:
        """The named synth preset, or its small stand-in in a smoke run."""
        if self.smoke:
            return {"gabriel-muse": SMOKE_GABRIEL, "gabriel-muse-10x": SMOKE_GABRIEL_10X}[name]
        return PRESETS[name] if name in PRESETS else GABRIEL_MUSE

    async def gabriel(self) -> PushedRepo:
        """The gabriel/muse-shaped repo, pushed once per run (shared by scenarios), with its
        clone pack (the whole head set) cached and the stack idle."""
        repo = self.hub.pushed.get("gabriel")
        if repo is None:
            repo = await self.hub.push("gabriel", self.preset("gabriel-muse").generate())
        if await self.hub.wait_warm(repo, [repo.want]) is None:
            raise RuntimeError("the prebuild of gabriel did not finish within 15 minutes")
        await self.hub.quiesce()
        return repo
