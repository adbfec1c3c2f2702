"""API bearer tokens: issued once (only their SHA-256 is stored), looked up per request.

A token belongs to a household (made by `replenish household create`) or to a web user
(the JSON API's log-in); the user's role decides what it may do (backend/web/api).
Every token expires (`REPLENISH_API_TOKEN_DAYS` after it was issued); its owner can
list the tokens it holds and revoke any of them (`GET /tokens`, `DELETE /tokens/{id}`).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.config import DEFAULTS
from backend.errors import NotFound, Unauthorized
from backend.storage.db import utcnow
from backend.storage.models import ApiToken, Household, User

_PREFIX = "rp_"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _issue(session: Session, days: float, **owner) -> str:
    token = _PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    session.add(ApiToken(token_sha256=token_hash(token), created_at=now,
                         expires_at=now + timedelta(days=days), **owner))
    session.flush()
    return token


def issue_for_household(session: Session, household_id: int,
                        days: float = DEFAULTS.api_token_days) -> str:
    """A household's token (the command line's); shown once."""
    return _issue(session, days, household_id=household_id)


def issue_for_user(session: Session, user: User, days: float = DEFAULTS.api_token_days) -> str:
    """A web user's token for the JSON API; shown once."""
    return _issue(session, days, user_id=user.id, household_id=user.household_id)


def _same_owner(token: ApiToken):
    if token.user_id is not None:
        return ApiToken.user_id == token.user_id
    return (ApiToken.household_id == token.household_id) & ApiToken.user_id.is_(None)


def of_user(session: Session, user_id: int) -> list[ApiToken]:
    """A web user's unexpired API tokens, oldest first (the account page)."""
    return list(session.scalars(
        select(ApiToken).where(ApiToken.user_id == user_id, ApiToken.expires_at > utcnow())
        .order_by(ApiToken.id)))


def revoke_of_user(session: Session, user_id: int, token_id: int) -> None:
    revoke(session, ApiToken(user_id=user_id), token_id)


def held_with(session: Session, token: ApiToken) -> list[ApiToken]:
    """The unexpired tokens of `token`'s owner (a user, or a household's command line),
    oldest first."""
    return list(session.scalars(
        select(ApiToken).where(_same_owner(token), ApiToken.expires_at > utcnow())
        .order_by(ApiToken.id)))


def revoke(session: Session, token: ApiToken, token_id: int) -> None:
    """Revoke one of the tokens of `token`'s owner (NotFound for anyone else's)."""
    found = session.scalars(select(ApiToken).where(_same_owner(token),
                                                   ApiToken.id == token_id)).one_or_none()
    if found is None:
        raise NotFound(f"no token {token_id} of yours")
    session.delete(found)
    session.flush()


@dataclass(frozen=True)
class Bearer:
    """Who a valid token speaks for."""

    token: ApiToken
    user: User | None  # None: a household's command-line token
    role: str  # "household" | "operator"
    household: Household | None  # None for an operator


def authenticate(session: Session, token: str) -> Bearer:
    row = session.scalars(
        select(ApiToken).where(ApiToken.token_sha256 == token_hash(token))).one_or_none()
    if row is None:
        raise Unauthorized("invalid API token")
    if row.expires_at is not None and row.expires_at <= utcnow():
        raise Unauthorized("API token expired: log in again (POST /tokens) for a new one")
    user = session.get(User, row.user_id) if row.user_id is not None else None
    household_id = row.household_id or (user.household_id if user else None)
    return Bearer(row, user, user.role if user is not None else "household",
                  session.get(Household, household_id) if household_id else None)
