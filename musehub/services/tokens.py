"""Access tokens: `mh_<token_id>_<secret>`. Only sha256(secret) is stored; the lookup is by
token_id and the comparison constant-time, so neither timing nor a DB dump reveals a token."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from musehub.db.models import AccessToken

# \Z, not $: `$` also matches before a trailing newline, so "alice\n" passed. Use fullmatch.
TOKEN_PATTERN = re.compile(r"^mh_([0-9a-f]{16})_([A-Za-z0-9_-]{43})\Z")
USER_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
TOKEN_ID_PATTERN = re.compile(r"^[0-9a-f]{16}\Z")


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_user_name(user: str) -> str:
    if not USER_NAME_PATTERN.fullmatch(user):
        raise ValueError(
            f"user name {user!r} is not valid: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return user


async def create_token(session: AsyncSession, user: str) -> str:
    """Create a token for `user` and return it; this is the only time it exists in clear."""
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    session.add(
        AccessToken(
            token_id=token_id, user_name=check_user_name(user), token_hash=_hash_secret(secret)
        )
    )
    await session.flush()
    return f"mh_{token_id}_{secret}"


async def authenticate(session: AsyncSession, token: str) -> str | None:
    """The user a token belongs to, or None for an unknown, malformed or revoked token."""
    match = TOKEN_PATTERN.fullmatch(token)
    if match is None:
        return None
    token_id, secret = match.groups()
    row = await session.scalar(select(AccessToken).where(AccessToken.token_id == token_id))
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.token_hash, _hash_secret(secret)):
        return None
    return row.user_name


def token_id_of(token_or_id: str) -> str | None:
    """The id part of a token, or the id itself; None for anything else."""
    match = TOKEN_PATTERN.fullmatch(token_or_id)
    if match:
        return match.group(1)
    return token_or_id if TOKEN_ID_PATTERN.fullmatch(token_or_id) else None


async def revoke_token(session: AsyncSession, token_id: str) -> bool:
    result = await session.execute(
        update(AccessToken)
        .where(AccessToken.token_id == token_id, AccessToken.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
