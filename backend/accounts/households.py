"""Households and their API tokens (only token hashes are stored)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from backend.accounts import tokens
from backend.config import DEFAULTS
from backend.errors import NotFound
from backend.storage.models import Household

# The order policies' bounds, the same from the command line, the API and the pages.
HOLD_WINDOW_MAX_S = 7 * 86400
ORDERS_PER_DAY_MAX = 1000


def create(session: Session, name: str,
           token_days: float = DEFAULTS.api_token_days) -> tuple[Household, str]:
    """Create a household and its first API token; the token is shown only now."""
    household = Household(name=name)
    session.add(household)
    session.flush()
    return household, tokens.issue_for_household(session, household.id, token_days)


def get(session: Session, household_id: int) -> Household:
    household = session.get(Household, household_id)
    if household is None:
        raise NotFound(f"no household {household_id}")
    return household
