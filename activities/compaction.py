"""The compaction step: a chain's oldest parts joined into a new base (musehub/services/
compaction.py holds the work and its crash-safety argument)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.common import Heartbeat
from musehub.contract import CompactChainInput, CompactChainResult
from musehub.services.compaction import compact_chain
from musehub.settings import Settings
from musehub.storage import ObjectStorage


class CompactionActivities:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        storage: ObjectStorage,
        settings: Settings,
    ) -> None:
        self._sessions = sessions
        self._storage = storage
        self._settings = settings

    @activity.defn(name="compact_mpack_chain")
    async def compact(self, chain: CompactChainInput) -> CompactChainResult:
        async with Heartbeat():
            return await compact_chain(
                self._sessions, self._storage, self._settings, chain.repo_id, chain.want
            )
