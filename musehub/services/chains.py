"""Chains of packs: what answers a want set, as a base plus one top-up per push.

Layout. A cache row (one per want set, `mpack_cache`) is answered by a chain of stored parts,
its links in `musehub_mpack_chain_links`, base first. Each link names the want set whose whole
history the chain holds up to and including that part: its *position*. The base holds all its
position reaches; each top-up holds what its position adds to the one before (the commits not
reachable from the previous position, their snapshots and objects, less those the parts before
it hold: `musehub_mpack_part_records` names what each part holds, so no record is in two parts
of a chain and the chain joined is the size of one fresh base). Parts are immutable and
content-addressed (`musehub_mpack_parts`), so chains that share a prefix, and lines of history
whose pushes add the same records (a branch and the head set after a push to that branch),
share parts and their bytes.

Appending. After a push the prebuild finds, among the repo's live chains, the one whose
position is the furthest ancestor of the new want set (`closest_base`): every one of its
position's commits is reachable from the new want set, so the chain plus what the new want set
adds is exactly the new want set's history. It builds only that top-up, and records the new row
as the base's links plus the new part. A force push or a deleted branch, whose old position is
not an ancestor of the new one, simply finds no such chain and gets a new base; so does a forced
rebuild. Neither finding the chain nor planning the top-up walks the whole history: the walk
from the new want set stops at the nearest chains' tips, and the top-up is the commits received
since the base row was recorded (`top_ups.py`), so both cost what the push added.

Serving. A clone of a want set is answered by its whole chain; a fetch whose `have` holds the
want set of some position of that chain needs only the parts after it (`Chain.after`). Both are
one lookup, and the position is found in the looked-up chain in memory, whatever the history's
length. Parts are joined into one pack by byte ranges (musehub/mpack/chain.py) for clients
that take one URL or the inline answer.

Collecting. Rows go first (expiry, lost packs); a part's object goes only when no row names it,
neither as its one-pack object nor through a link (musehub/services/gc.py)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from musehub.db.models import MPackPart
from musehub.mpack.chain import StoredPart, joined_size
from musehub.mpack.writer import PackDigest, SectionSpan


@dataclass(frozen=True)
class ChainPart:
    """One link of a chain: the stored part and the position it completes."""

    mpack_id: str
    size: int
    sha256: str
    want: tuple[str, ...]  # the position: the chain up to here holds this want set's history
    sections: tuple[SectionSpan, ...]

    @property
    def stored(self) -> StoredPart:
        return StoredPart(self.mpack_id, self.sections)


@dataclass(frozen=True)
class Chain:
    parts: tuple[ChainPart, ...]

    @property
    def joined_size(self) -> int:
        return joined_size([p.stored for p in self.parts])

    @property
    def commit_count(self) -> int:
        return sum(p.sections[0].count for p in self.parts)

    @property
    def object_count(self) -> int:
        return sum(p.sections[2].count for p in self.parts)

    def after(self, have: Iterable[str]) -> Chain | None:
        """The parts a client holding `have` still needs: those after the furthest position
        whose want set `have` holds. None when `have` holds no position of this chain."""
        held = set(have)
        for index in range(len(self.parts) - 1, -1, -1):
            if held.issuperset(self.parts[index].want):
                return Chain(self.parts[index + 1 :])
        return None


def parts_to_merge(
    chain: Chain,
    *,
    compact_parts: int,
    ratio: float,
    keep: int,
    keep_part_bytes: int | None = None,
) -> tuple[int, int]:
    """The parts `[start, end)` a compaction joins into one; `(0, 0)`: leave the chain as it is.

    A levelled (size-tiered) rule, so that what a compaction copies is paid for by the bytes
    pushed since the parts it rewrites were written, and no one push rewrites the history:

    - *Kept*: the newest parts, up to `keep` of them, as long as each holds at most
      `keep_part_bytes` (None: any size), are never joined, so a pull from any of the last
      `keep` ordinary pushes stays a hit. A bigger part (an import's chunk, a push of big
      files) ends the kept parts: it and the parts before it are levelled at once, while it is
      the newest history, so its rewrite is paid for by the push that brought it, never by
      the small pushes after it.
    - *Levels*: among the parts before the kept ones, part `i` is joined with every part
      after it once those hold more than `ratio` times its bytes; the oldest such `i` is
      taken. Once nothing is due, every part outweighs all those after it put together: n
      bytes are at most log2(n / the smallest part) + 1 parts, a part's bytes are rewritten
      once per doubling of what came after it (the base once the history has doubled since
      it was written), and a join copies at most (1 + 1 / ratio) times the bytes pushed since
      its oldest part was written.
    - *Count*: when no level is due but the chain has more than `compact_parts` parts, the
      two newest parts before the kept ones are joined (the cheapest join that shortens it).

    A compaction applies this until it says `(0, 0)` (`compaction.compact_chain`), so an
    import of many chunks is levelled by its own compactions and the small pushes after it
    find nothing due."""
    parts = chain.parts
    end = len(parts)
    while (
        len(parts) - end < keep
        and end > 0
        and (keep_part_bytes is None or parts[end - 1].size <= keep_part_bytes)
    ):
        end -= 1
    sizes = [part.size for part in parts[:end]]
    after = sum(sizes)
    for index, size in enumerate(sizes[:-1]):
        after -= size
        if after > ratio * size:
            return index, end
    if len(parts) > compact_parts and end >= 2:
        return end - 2, end
    return 0, 0


def part_from_json(row: Sequence[Any]) -> ChainPart:
    """A ChainPart from the JSON array `CHAIN_JSON` builds for each link."""
    mpack_id, want, size, sha256, *numbers = row
    commits, snapshots, objects, c0, c1, s0, s1, o0, o1 = (int(n) for n in numbers)
    sections = (
        SectionSpan(commits, c0, c1),
        SectionSpan(snapshots, s0, s1),
        SectionSpan(objects, o0, o1),
    )
    return ChainPart(str(mpack_id), int(size), str(sha256), tuple(want), sections)


# The links of one cache row as JSON arrays in chain order, for a lookup to embed.
CHAIN_JSON = """
(SELECT json_agg(json_build_array(
            l.mpack_id, l.want_commit_ids, p.size_bytes, p.sha256,
            p.commit_count, p.snapshot_count, p.object_count,
            p.commits_start, p.commits_end, p.snapshots_start, p.snapshots_end,
            p.objects_start, p.objects_end) ORDER BY l.position)
   FROM musehub_mpack_chain_links l JOIN musehub_mpack_parts p ON p.mpack_id = l.mpack_id
  WHERE l.cache_id = {cache_id})"""

_CHAIN_OF = text("SELECT " + CHAIN_JSON.format(cache_id=":cache_id"))


async def load_chain(session: AsyncSession, cache_id: str) -> Chain | None:
    """The chain behind a cache row; None for a row from before chains (no links)."""
    rows = await session.scalar(_CHAIN_OF, {"cache_id": cache_id})
    return chain_from_json(rows)


def chain_from_json(rows: Sequence[Sequence[Any]] | None) -> Chain | None:
    if not rows:
        return None
    return Chain(tuple(part_from_json(row) for row in rows))


async def record_part(session: AsyncSession, repo_id: str, key: str, digest: PackDigest) -> None:
    """Describe a stored pack as a part; the same bytes are the same part (kept as it is)."""
    commits, snapshots, objects = digest.sections
    await session.execute(
        insert(MPackPart)
        .values(
            mpack_id=key,
            repo_id=repo_id,
            size_bytes=digest.size,
            sha256=digest.sha256,
            commit_count=commits.count,
            snapshot_count=snapshots.count,
            object_count=objects.count,
            commits_start=commits.start,
            commits_end=commits.end,
            snapshots_start=snapshots.start,
            snapshots_end=snapshots.end,
            objects_start=objects.start,
            objects_end=objects.end,
        )
        .on_conflict_do_nothing(index_elements=[MPackPart.mpack_id])
    )


# What a part holds besides its commits (musehub_mpack_part_records.kind).
SNAPSHOT, OBJECT = 1, 2

_RECORD_HELD = text(
    """
INSERT INTO musehub_mpack_part_records (mpack_id, kind, record_id, repo_id)
SELECT :mpack_id, :kind, id, :repo_id FROM unnest(CAST(:ids AS text[])) AS ids(id)
ON CONFLICT DO NOTHING
"""
)

_COPY_HELD = text(
    """
INSERT INTO musehub_mpack_part_records (mpack_id, kind, record_id, repo_id)
SELECT DISTINCT :mpack_id, kind, record_id, :repo_id
FROM musehub_mpack_part_records WHERE mpack_id = ANY(CAST(:parts AS text[]))
ON CONFLICT DO NOTHING
"""
)

_HELD = text(
    """
SELECT DISTINCT r.kind, r.record_id
FROM (SELECT 1 AS kind, unnest(CAST(:snapshots AS text[])) AS id
      UNION ALL SELECT 2, unnest(CAST(:objects AS text[]))) AS c
JOIN musehub_mpack_part_records r
  ON r.kind = c.kind AND r.record_id = c.id AND r.mpack_id = ANY(CAST(:parts AS text[]))
"""
)


async def record_held(
    session: AsyncSession,
    repo_id: str,
    mpack_id: str,
    snapshot_ids: Sequence[str],
    object_ids: Sequence[str],
) -> None:
    """Record the snapshots and objects the stored part `mpack_id` holds (what later top-ups
    on a chain through it leave out). Only ever what the part holds: fewer rows than that
    only make a top-up repeat a record, never lose one."""
    for kind, ids in ((SNAPSHOT, snapshot_ids), (OBJECT, object_ids)):
        if ids:
            params = {"mpack_id": mpack_id, "kind": kind, "ids": list(ids), "repo_id": repo_id}
            await session.execute(_RECORD_HELD, params)


async def copy_held(
    session: AsyncSession, repo_id: str, mpack_id: str, parts: Sequence[str]
) -> None:
    """A part joined from `parts` holds what they hold."""
    params = {"mpack_id": mpack_id, "repo_id": repo_id, "parts": list(parts)}
    await session.execute(_COPY_HELD, params)


async def held_by(
    session: AsyncSession,
    chain: Chain,
    snapshot_ids: Sequence[str],
    object_ids: Sequence[str],
) -> tuple[set[str], set[str]]:
    """Which of these snapshots and objects the chain's parts hold (as far as recorded)."""
    if not chain.parts or not (snapshot_ids or object_ids):
        return set(), set()
    params = {
        "parts": [p.mpack_id for p in chain.parts],
        "snapshots": list(snapshot_ids),
        "objects": list(object_ids),
    }
    held: tuple[set[str], set[str]] = (set(), set())
    for kind, record_id in (await session.execute(_HELD, params)).all():
        held[0 if kind == SNAPSHOT else 1].add(record_id)
    return held


# Live chains of the repo whose position is reachable from :want, furthest first. The walk from
# :want stops at the tip of every live one-tip row (what is behind it is that chain's), so it
# reads what was pushed since the nearest chains, not the whole history: one statement whose
# cost follows the push. Only the first push of a history, with no chain yet, walks it all.
# (Head-set rows do not stop it: one of their tips may be behind another.)
_CLOSEST_BASE = text(
    """
WITH RECURSIVE candidates AS MATERIALIZED (
    SELECT f.cache_id, f.want_commit_ids, f.commit_count, f.recorded_at, f.tip_commit_id
    FROM musehub_fetch_mpack_cache f
    WHERE f.repo_id = :repo_id AND f.expires_at > now()
      AND EXISTS (SELECT 1 FROM musehub_mpack_chain_links l WHERE l.cache_id = f.cache_id)
), ends AS MATERIALIZED (
    SELECT tip_commit_id AS commit_id FROM candidates WHERE tip_commit_id IS NOT NULL
), reach(commit_id) AS (
    SELECT unnest(CAST(:want AS text[]))
  UNION
    SELECT parent.commit_id
    FROM reach r
    JOIN musehub_commits c ON c.repo_id = :repo_id AND c.commit_id = r.commit_id
    CROSS JOIN LATERAL (VALUES (c.parent_commit_id), (c.parent2_commit_id)) AS parent(commit_id)
    WHERE parent.commit_id IS NOT NULL
      AND (r.commit_id = ANY(CAST(:expand AS text[]))
           OR NOT EXISTS (SELECT 1 FROM ends e WHERE e.commit_id = r.commit_id))
), walked AS MATERIALIZED (
    SELECT commit_id FROM reach LIMIT :max_walk  -- NULL: all; the walk stops at the limit
)
SELECT (SELECT count(*) FROM walked), best.*
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
    SELECT c.cache_id, c.want_commit_ids, c.recorded_at
    FROM candidates c
    WHERE NOT (CAST(c.want_commit_ids AS text[]) <@ CAST(:expand AS text[]))
      AND NOT EXISTS (
        SELECT 1 FROM unnest(c.want_commit_ids) AS w(commit_id)
        WHERE w.commit_id NOT IN (SELECT commit_id FROM walked)
    )
    ORDER BY c.commit_count DESC, c.cache_id
    LIMIT 1
) AS best ON true
"""
)


@dataclass(frozen=True)
class BaseChain:
    """The live chain a new want set's top-up appends to."""

    want: list[str]  # the row's own want set: the top-up is planned against its history
    chain: Chain
    # When the row was recorded, by the database's clock (None: a row from before it was kept):
    # every commit its chain holds was received before then.
    recorded_at: datetime | None


async def closest_base(
    session: AsyncSession,
    repo_id: str,
    want: Sequence[str],
    *,
    max_walk: int | None = None,
    expand: Sequence[str] = (),
) -> BaseChain | None:
    """The live chain to append `want`'s top-up to: the one whose position holds the most
    commits among those all of whose want set `want` reaches, or None.

    The row's own want set, not its chain's last position: the two differ when the row's
    top-up was empty (its want set's history equals an earlier position's, so the row is that
    chain as it was), and that position's own row may have expired since while this one lives;
    the record step finds the chain again by the want set returned here.

    The walk stops at live one-tip rows' tips, so a position behind one of them is not seen:
    the chain found is always a valid base (its want set is reached), the nearest along each
    line of history.

    `max_walk`: give up (None) past that many commits walked, for callers that must stay
    quick (the first push of a long history, with no chain to stop at, walks all of it).

    `expand`: commits the walk goes past even where a live row's tip stops it, and whose own
    rows are not bases (a head set's own tips, whose rows a tip's check running beside it may
    have just recorded: the head set's older row is the base it wants)."""
    params = {"repo_id": repo_id, "want": list(want), "max_walk": max_walk, "expand": list(expand)}
    walked, cache_id, base_want, recorded_at = (await session.execute(_CLOSEST_BASE, params)).one()
    if cache_id is None or (max_walk is not None and walked >= max_walk):
        return None
    chain = await load_chain(session, cache_id)
    if chain is None:
        return None
    return BaseChain(list(base_want), chain, recorded_at)
