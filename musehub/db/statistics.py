"""Fresh planner statistics after a bulk insert.

The history and pack-plan queries are planned from table statistics. After a push adds
thousands of commits to a young repo, those still say the repo holds about one commit, and the
planner picks plans that are quadratic in the real count: a 32,493-commit pack plan took 70 s
instead of well under one, and the fast-forward check of a 100,000-commit push ran for minutes.
Autovacuum would fix the statistics, but only after its next nap, and the prebuild plans the new
tips at once. So a big push refreshes them itself, inside its transaction (they commit with the
rows), for the columns those queries join and filter on only."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# New commits in one push from which it is worth ~0.1 s to analyze (a push that big takes
# seconds anyway); below that, a wrong estimate costs little.
ANALYZE_AFTER_NEW_COMMITS = 1000

_ANALYZE = (
    "ANALYZE musehub_commits"
    " (repo_id, commit_id, snapshot_id, parent_commit_id, parent2_commit_id)",
    "ANALYZE musehub_snapshots (repo_id, snapshot_id)",
    "ANALYZE musehub_objects (repo_id, object_id)",
)


async def refresh_history_statistics(session: AsyncSession) -> None:
    for statement in _ANALYZE:
        await session.execute(text(statement))
