"""Repositories: creation, lookup by owner/slug, and who may read or push."""

from __future__ import annotations

import re
import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from musehub.db.models import Branch, Repo
from musehub.domains import DOMAINS
from musehub.services.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from musehub.services.tokens import USER_NAME_PATTERN, check_user_name

# \Z, not $: `$` also matches before a trailing newline, so "pub\n" passed. Use fullmatch.
SLUG_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\Z")


async def create_repo(
    session: AsyncSession, owner: str, slug: str, *, private: bool = False, domain: str = "code"
) -> Repo:
    try:
        check_user_name(owner)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    if not SLUG_PATTERN.fullmatch(slug) or slug.endswith((".git", ".")):
        raise BadRequest(
            f"repository name {slug!r} is not valid: use 1-100 letters, digits, '.', '_' or '-'"
        )
    if domain not in DOMAINS:
        raise BadRequest(f"domain must be one of {', '.join(DOMAINS)} (got {domain!r})")
    repo = Repo(
        repo_id=str(uuid.uuid4()),
        owner=owner,
        slug=slug,
        visibility="private" if private else "public",
        domain=domain,
        default_branch="main",
    )
    session.add(repo)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"repository {owner}/{slug} already exists") from None
    return repo


def could_exist(owner: str, slug: str) -> bool:
    """Whether a repo could have this name at all. A URL's owner or slug may hold anything,
    NUL included, which PostgreSQL refuses in text: such a name is answered as not found
    without asking the database."""
    return bool(USER_NAME_PATTERN.fullmatch(owner) and SLUG_PATTERN.fullmatch(slug))


async def find_repo(session: AsyncSession, owner: str, slug: str) -> Repo | None:
    if not could_exist(owner, slug):
        return None
    return await session.scalar(select(Repo).where(Repo.owner == owner, Repo.slug == slug))


def can_read(repo: Repo, user: str | None) -> bool:
    return is_readable(repo.owner, repo.visibility, user)


def is_readable(owner: str, visibility: str, user: str | None) -> bool:
    return visibility == "public" or (user is not None and user == owner)


def not_found(owner: str, slug: str) -> NotFound:
    """A private repo looks exactly like a missing one."""
    return NotFound(
        f"repository {owner}/{slug} not found (check the URL, or your token if it is private)"
    )


async def repo_for_read(session: AsyncSession, owner: str, slug: str, user: str | None) -> Repo:
    """The repo if `user` may read it. A private repo looks exactly like a missing one."""
    repo = await find_repo(session, owner, slug)
    if repo is None or not can_read(repo, user):
        raise not_found(owner, slug)
    return repo


async def repo_for_push(session: AsyncSession, owner: str, slug: str, user: str | None) -> Repo:
    repo = await repo_for_read(session, owner, slug, user)
    if user is None:
        raise Unauthorized(
            f"pushing to {owner}/{slug} needs a token: muse auth with a token of {owner}"
        )
    if user != repo.owner:
        raise Forbidden(f"user {user} may not push to {owner}/{slug}; only {owner} can")
    return repo


async def branch_heads(session: AsyncSession, repo_id: str) -> dict[str, str]:
    rows = await session.execute(
        select(Branch.name, Branch.head_commit_id)
        .where(Branch.repo_id == repo_id)
        .order_by(Branch.name)
    )
    return {name: head for name, head in rows.all()}
