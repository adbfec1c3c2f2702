"""Households and their API tokens (only token hashes are stored)."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.errors import NotFound, Unauthorized
from backend.storage.models import ApiToken, Household


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(session: Session, name: str) -> tuple[Household, str]:
    """Create a household and its first API token; the token is shown only now."""
    household = Household(name=name)
    session.add(household)
    session.flush()
    return household, issue_token(session, household.id)


def issue_token(session: Session, household_id: int) -> str:
    token = "rp_" + secrets.token_urlsafe(32)
    session.add(ApiToken(household_id=household_id, token_sha256=_token_hash(token)))
    return token


def get(session: Session, household_id: int) -> Household:
    household = session.get(Household, household_id)
    if household is None:
        raise NotFound(f"no household {household_id}")
    return household


def by_token(session: Session, token: str) -> Household:
    row = session.scalars(
        select(ApiToken).where(ApiToken.token_sha256 == _token_hash(token))
    ).one_or_none()
    if row is None:
        raise Unauthorized("invalid API token")
    return session.get(Household, row.household_id)
