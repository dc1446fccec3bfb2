"""Deterministic synthetic commit history: the same arguments always give the same ids.

Shape: ``main`` starts with ``files`` files; work happens in runs of a few commits on one
branch at a time; side branches fork from ``main`` on their first commit and are merged back
into ``main`` now and then (merge commits carry ``parent2_commit_id``). Each edit commit
adds new blobs from a fixed budget so the repo ends with exactly ``blobs`` distinct objects;
once the budget is spread, an edit may revert a file to an earlier version or copy one
(new snapshot, no new blob). Ids come from ``musehub.mpack.ids``, as the muse client's.
"""

from __future__ import annotations

import datetime
import hashlib
import random
import uuid
from dataclasses import dataclass
from typing import Any

from musehub.mpack.ids import commit_id, snapshot_id
from musehub.synth.blobs import BlobFactory
from musehub.synth.repo import Record, SynthRepo

SIDE_BRANCHES = ("dev", "feature/mpack", "feature/clone", "fix/merge-engine", "release/0.2")
_DIRS = (
    ("muse/core", "py"),
    ("muse/cli/commands", "py"),
    ("muse/plugins/midi", "py"),
    ("muse/plugins/code", "py"),
    ("tests", "py"),
    ("docs", "md"),
)
_STEMS = ("store", "merge", "pack", "transport", "snapshot", "diff", "log", "schema", "query")
_VERBS = ("update", "refactor", "fix", "tune", "document")
_BUMPS = (("none", 5), ("patch", 3), ("minor", 2), ("major", 1))
_START = datetime.datetime(2025, 3, 3, 9, 0, 0, 1, tzinfo=datetime.UTC)
NEW_PATH_CHANCE = 0.05


@dataclass(frozen=True)
class _Step:
    branch: str
    merge_from: str | None = None


def generate_repo(
    commits: int,
    files: int,
    file_size: int,
    branches: int,
    seed: int = 0,
    *,
    blobs: int | None = None,
    size_sigma: float = 1.0,
    domain: str = "code",
    default_branch: str = "main",
) -> SynthRepo:
    """A repository of ``commits`` commits on ``branches`` branches, ``blobs`` distinct objects
    (default one new blob per commit) of mean size ``file_size`` bytes."""
    n_blobs = blobs if blobs is not None else files + commits - 1
    if commits < 1 or files < 1 or file_size < 1 or not 1 <= branches <= commits:
        raise ValueError("need commits >= branches >= 1, files >= 1 and file_size >= 1")
    if n_blobs < files:
        raise ValueError(f"blobs ({n_blobs}) must be at least files ({files})")
    rng = random.Random(f"history:{seed}")
    sides = _side_names(branches - 1)
    plan = _plan(commits, default_branch, sides, rng)
    edits = [i for i, step in enumerate(plan) if i > 0 and step.merge_from is None]
    new_blobs = _spread(n_blobs - files, edits, rng)
    initial_files = files + (n_blobs - files if not edits else 0)
    factory = BlobFactory(n_blobs, file_size, seed, size_sigma)
    repo_id = str(uuid.UUID(int=random.Random(f"repo:{seed}").getrandbits(128), version=4))
    builder = _Builder(rng, factory, repo_id, default_branch)
    for i, step in enumerate(plan):
        if i == 0:
            builder.initial(initial_files)
        elif step.merge_from is not None:
            builder.merge(step.merge_from)
        else:
            builder.edit(step.branch, new_blobs.get(i, 0))
    return SynthRepo(
        repo_id=repo_id,
        domain=domain,
        default_branch=default_branch,
        commits=builder.commits,
        snapshots=builder.snapshots,
        branch_heads=dict(builder.heads),
        blobs=factory,
    )


def _side_names(count: int) -> list[str]:
    return [SIDE_BRANCHES[i] if i < len(SIDE_BRANCHES) else f"feature/{i}" for i in range(count)]


def _plan(commits: int, main: str, sides: list[str], rng: random.Random) -> list[_Step]:
    """Which branch each commit lands on, in time order; every side gets at least one commit."""
    steps = [_Step(main)]
    unstarted = list(sides)
    started: list[str] = []
    unmerged: list[str] = []
    while len(steps) < commits:
        remaining = commits - len(steps)
        if unstarted and (remaining <= len(unstarted) or rng.random() < 0.3):
            branch = unstarted.pop(0)
            started.append(branch)
        elif started and rng.random() < 0.45:
            branch = rng.choice(started)
        else:
            branch = main
        run = max(1, min(rng.randint(3, 24), remaining - len(unstarted)))
        merge_from = None
        if branch == main and unmerged and rng.random() < 0.5:
            merge_from = unmerged.pop(rng.randrange(len(unmerged)))
        elif branch != main and branch not in unmerged:
            unmerged.append(branch)
        steps.append(_Step(branch, merge_from))
        steps.extend(_Step(branch) for _ in range(run - 1))
    return steps


def _spread(budget: int, slots: list[int], rng: random.Random) -> dict[int, int]:
    """Deal ``budget`` new blobs over the edit commits as evenly as possible, randomly."""
    if not slots or budget <= 0:
        return {}
    base, extra = divmod(budget, len(slots))
    lucky = set(rng.sample(slots, extra))
    return {i: base + (1 if i in lucky else 0) for i in slots}


class _Builder:
    """Turns the plan into records, keeping each branch's current tree."""

    def __init__(self, rng: random.Random, blobs: BlobFactory, repo_id: str, main: str) -> None:
        self.rng = rng
        self.blobs = blobs
        self.repo_id = repo_id
        self.main = main
        self.commits: list[Record] = []
        self.snapshots: dict[str, Record] = {}
        self.heads: dict[str, str] = {}
        self.trees: dict[str, dict[str, str]] = {}
        self.versions: dict[str, list[str]] = {}
        self.next_blob = 0
        self.next_path = 0
        self.clock = _START

    def initial(self, files: int) -> None:
        tree: dict[str, str] = {}
        for _ in range(files):
            self._put(tree, self._new_path(), self._new_blob())
        self._commit(self.main, tree, "initial import", [], None)

    def merge(self, side: str) -> None:
        tree = {**self.trees[self.main], **self.trees[side]}
        parents = [self.heads[self.main], self.heads[side]]
        self._commit(self.main, tree, f"merge {side} into {self.main}", parents, None)

    def edit(self, branch: str, new_blobs: int) -> None:
        base = branch if branch in self.heads else self.main  # a side forks from main
        tree = dict(self.trees[base])
        ops: list[dict[str, Any]] = []
        for _ in range(new_blobs):
            path = self._new_path() if self.rng.random() < NEW_PATH_CHANCE else self._pick(tree)
            ops.append(self._op(path, tree.get(path), self._new_blob()))
            self._put(tree, path, ops[-1]["new_content_id"])
        if not ops:
            path, oid = self._revert_or_copy(tree)
            ops.append(self._op(path, tree.get(path), oid))
            self._put(tree, path, oid)
        verb = "add" if ops[0]["op"] == "insert" else self.rng.choice(_VERBS)
        message = f"{verb} {ops[0]['address']}" + (f" (+{len(ops) - 1})" if len(ops) > 1 else "")
        delta = self._delta(ops) if self.rng.random() < 0.8 else None
        self._commit(branch, tree, message, [self.heads[base]], delta)

    # -- pieces --------------------------------------------------------------------------

    def _commit(
        self,
        branch: str,
        tree: dict[str, str],
        message: str,
        parents: list[str],
        delta: dict[str, Any] | None,
    ) -> None:
        self.clock += datetime.timedelta(
            seconds=self.rng.randint(30, 6 * 3600), microseconds=self.rng.randint(0, 999_999)
        )
        committed_at = self.clock.isoformat(timespec="microseconds")
        created_at = self.clock - datetime.timedelta(milliseconds=self.rng.randint(5, 900))
        sid = snapshot_id(tree)
        if sid not in self.snapshots:
            self.snapshots[sid] = {
                "snapshot_id": sid,
                "manifest": tree,
                "created_at": created_at.isoformat(timespec="microseconds"),
            }
        cid = commit_id(parents, sid, message, committed_at)
        self.commits.append(
            self._commit_dict(cid, branch, sid, message, committed_at, parents, delta)
        )
        self.heads[branch] = cid
        self.trees[branch] = tree

    def _commit_dict(
        self,
        cid: str,
        branch: str,
        sid: str,
        message: str,
        committed_at: str,
        parents: list[str],
        delta: dict[str, Any] | None,
    ) -> Record:
        rng = self.rng
        by_agent = rng.random() < 0.1
        bump = str(delta["sem_ver_bump"]) if delta else "none"
        return {  # the 22 CommitDict keys, in the muse client's order
            "commit_id": cid,
            "repo_id": self.repo_id,
            "branch": branch,
            "snapshot_id": sid,
            "message": message,
            "committed_at": committed_at,
            "parent_commit_id": parents[0] if parents else None,
            "parent2_commit_id": parents[1] if len(parents) > 1 else None,
            "author": "gabriel",
            "metadata": {},
            "structured_delta": delta,
            "sem_ver_bump": bump,
            "breaking_changes": list(delta["breaking_changes"]) if delta else [],
            "agent_id": "muse-agent" if by_agent else "",
            "model_id": "claude-opus-4" if by_agent else "",
            "toolchain_id": "cursor-agent-v2" if by_agent else "",
            "prompt_hash": hashlib.sha256(message.encode()).hexdigest() if by_agent else "",
            "signature": "",
            "signer_key_id": "",
            "format_version": 5,
            "reviewed_by": ["gabriel"] if by_agent else [],
            "test_runs": rng.randint(0, 5),
        }

    def _delta(self, ops: list[dict[str, Any]]) -> dict[str, Any]:
        bump = self.rng.choices([b for b, _ in _BUMPS], weights=[w for _, w in _BUMPS])[0]
        added = sum(op["op"] == "insert" for op in ops)
        return {
            "domain": "code",
            "ops": ops,
            "summary": f"{len(ops) - added} modified, {added} added",
            "sem_ver_bump": bump,
            "breaking_changes": [ops[0]["address"]] if bump == "major" else [],
        }

    @staticmethod
    def _op(path: str, old: str | None, new: str) -> dict[str, Any]:
        return {
            "op": "replace" if old else "insert",
            "address": path,
            "position": None,
            "old_content_id": old,
            "new_content_id": new,
            "old_summary": f"{path} (before)" if old else None,
            "new_summary": f"{path} (after)",
        }

    def _revert_or_copy(self, tree: dict[str, str]) -> tuple[str, str]:
        """A change that needs no new blob: an earlier version of a file, or a copy of one."""
        paths = list(tree)
        for _ in range(8):
            path = self.rng.choice(paths)
            older = [v for v in self.versions[path] if v != tree[path]]
            if older:
                return path, self.rng.choice(older)
        return self._new_path(), tree[self.rng.choice(paths)]

    def _pick(self, tree: dict[str, str]) -> str:
        return self.rng.choice(list(tree))

    def _put(self, tree: dict[str, str], path: str, oid: str) -> None:
        tree[path] = oid
        versions = self.versions.setdefault(path, [])
        if oid not in versions:
            versions.append(oid)

    def _new_blob(self) -> str:
        oid = self.blobs.ids[self.next_blob]
        self.next_blob += 1
        return oid

    def _new_path(self) -> str:
        n = self.next_path
        self.next_path += 1
        directory, ext = _DIRS[n % len(_DIRS)]
        return f"{directory}/{_STEMS[n % len(_STEMS)]}_{n}.{ext}"
