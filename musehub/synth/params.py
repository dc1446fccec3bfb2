"""Named shapes for generated repositories."""

from __future__ import annotations

from dataclasses import dataclass, replace

from musehub.synth.history import generate_repo
from musehub.synth.repo import SynthRepo


@dataclass(frozen=True)
class SynthParams:
    commits: int
    files: int
    file_size: int
    branches: int
    blobs: int | None = None
    seed: int = 0
    size_sigma: float = 1.0

    def scaled(self, factor: int) -> SynthParams:
        """``factor`` times the history and the blob bytes; the starting tree stays the same."""
        blobs = None if self.blobs is None else self.blobs * factor
        return replace(self, commits=self.commits * factor, blobs=blobs)

    def generate(self) -> SynthRepo:
        return generate_repo(
            self.commits,
            self.files,
            self.file_size,
            self.branches,
            self.seed,
            blobs=self.blobs,
            size_sigma=self.size_sigma,
        )


# Shaped like gabriel/muse, the repo whose clone timed out on the original hub:
# 1,329 commits, 1,075 distinct blobs, ~22 MB of blob bytes, a handful of branches.
GABRIEL_MUSE = SynthParams(commits=1329, files=120, file_size=20_465, branches=4, blobs=1075)

PRESETS: dict[str, SynthParams] = {
    "gabriel-muse": GABRIEL_MUSE,
    "gabriel-muse-10x": GABRIEL_MUSE.scaled(10),
}
