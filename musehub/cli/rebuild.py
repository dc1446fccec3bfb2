"""`musehub rebuild OWNER/SLUG [--force]`: rebuild a repo's prebuilt clone packs now."""

from __future__ import annotations

import argparse

from sqlalchemy.ext.asyncio import AsyncSession

from musehub.cli.repos import split_repo_name
from musehub.cli.temporal_client import connect_or_explain, run_then_exit
from musehub.db.engine import create_engine
from musehub.services.errors import WireError
from musehub.services.rebuild import RebuildStarted, rebuild_packs
from musehub.services.repos import find_repo
from musehub.settings import Settings, load_settings


async def _rebuild(settings: Settings, owner: str, slug: str, force: bool) -> RebuildStarted:
    client = await connect_or_explain(settings)
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        async with AsyncSession(engine) as session:
            repo = await find_repo(session, owner, slug)
            if repo is None:
                raise RuntimeError(f"no repository {owner}/{slug}")
            return await rebuild_packs(session, client, settings, repo, force=force)
    except WireError as exc:
        raise RuntimeError(exc.message) from None
    finally:
        await engine.dispose()


def run_rebuild(args: argparse.Namespace) -> int:
    owner, slug = split_repo_name(args.name)
    settings = load_settings()

    async def rebuild_and_report() -> None:
        started = await _rebuild(settings, owner, slug, args.force)
        kind = "forced rebuild" if started.force else "rebuild"
        print(f"{kind} of {owner}/{slug} requested for {len(started.tips)} tip(s)")
        print(f'workflow: {started.workflow_id} (Temporal UI: search MusehubRepo="{owner}/{slug}")')

    run_then_exit("rebuild", rebuild_and_report)
