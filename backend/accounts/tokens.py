"""API bearer tokens: issued once (only their SHA-256 is stored), looked up per request.

A token belongs to a household (made by `replenish household create`) or to a web user
(the JSON API's log-in); the user's role decides what it may do (backend/web/api).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.errors import Unauthorized
from backend.storage.models import ApiToken, Household, User

_PREFIX = "rp_"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _issue(session: Session, **owner) -> str:
    token = _PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(token_sha256=token_hash(token), **owner))
    session.flush()
    return token


def issue_for_household(session: Session, household_id: int) -> str:
    """A household's token (the command line's); shown once."""
    return _issue(session, household_id=household_id)


def issue_for_user(session: Session, user: User) -> str:
    """A web user's token for the JSON API; shown once."""
    return _issue(session, user_id=user.id, household_id=user.household_id)


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
    user = session.get(User, row.user_id) if row.user_id is not None else None
    household_id = row.household_id or (user.household_id if user else None)
    return Bearer(row, user, user.role if user is not None else "household",
                  session.get(Household, household_id) if household_id else None)
