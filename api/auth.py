"""Who is calling: the user behind an `Authorization: Bearer <token>` header, or nobody."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.deps import SessionDep
from musehub.services.errors import Unauthorized
from musehub.services.tokens import authenticate


async def current_user(request: Request, session: SessionDep) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    user = await authenticate(session, token.strip())
    if user is None:
        raise Unauthorized("this token is not valid (mistyped, revoked or from another hub)")
    return user


UserDep = Annotated[str | None, Depends(current_user)]
