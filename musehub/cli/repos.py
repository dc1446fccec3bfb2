"""`musehub repo create` and `musehub token create`: operator commands that write to the
database directly (MUSEHUB_DATABASE_URL, or the `musehub dev` database by default)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from musehub.db.engine import create_engine
from musehub.services.errors import WireError
from musehub.services.repos import create_repo
from musehub.services.tokens import check_user_name, create_token, revoke_token, token_id_of
from musehub.settings import load_settings


def split_repo_name(name: str) -> tuple[str, str]:
    owner, sep, slug = name.partition("/")
    if not sep or not owner or not slug or "/" in slug:
        raise RuntimeError(f"expected OWNER/SLUG, got {name!r}")
    return owner, slug


async def _with_session(action: Any) -> Any:
    engine = create_engine(load_settings().database_url, pool_size=1)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session:
            result = await action(session)
            await session.commit()
            return result
    except WireError as exc:
        raise RuntimeError(exc.message) from None
    except OSError as exc:
        raise RuntimeError(
            f"cannot reach the database ({exc}); is `musehub dev` running, "
            "or MUSEHUB_DATABASE_URL set?"
        ) from None
    finally:
        await engine.dispose()


def run_repo_create(args: argparse.Namespace) -> int:
    owner, slug = split_repo_name(args.name)
    repo = asyncio.run(
        _with_session(
            lambda s: create_repo(s, owner, slug, private=args.private, domain=args.domain)
        )
    )
    settings = load_settings()
    print(f"created {repo.visibility} {repo.domain} repository {owner}/{slug} (id {repo.repo_id})")
    print(f"remote URL: {settings.public_base_url}/{owner}/{slug}")
    return 0


def run_token_create(args: argparse.Namespace) -> int:
    try:
        check_user_name(args.user)
    except ValueError as exc:
        raise RuntimeError(str(exc)) from None
    token = asyncio.run(_with_session(lambda s: create_token(s, args.user)))
    print(f"token for {args.user} (shown once; only its hash is stored):")
    print(token)
    return 0


def run_token_revoke(args: argparse.Namespace) -> int:
    token_id = token_id_of(args.token)
    if token_id is None:
        raise RuntimeError("give a token (mh_<id>_<secret>) or its 16-character id")
    if not asyncio.run(_with_session(lambda s: revoke_token(s, token_id))):
        raise RuntimeError(f"no active token with id {token_id}")
    print(f"revoked token {token_id}; it no longer authenticates")
    return 0
