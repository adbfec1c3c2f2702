"""What every API module shares: the blueprint, sessions, bearer-token auth, pagination."""

from __future__ import annotations

import functools
import hashlib
from urllib.parse import urlencode

from flask import Blueprint, g, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.errors import ReplenishError, Unauthorized
from backend.storage.models import ApiToken, Household, User
from backend.web.api.validation import INT32_MAX, check_text, query_int
from backend.web.request_db import db, writing  # noqa: F401 (the API modules' import)

bp = Blueprint("api", __name__, url_prefix="/api/v1")

# Integer ids in paths: the columns are 32-bit, so nothing exists outside these bounds;
# Werkzeug answers 404 for them before any query, and the document states the bounds.
ID = f"int(min=1, max={INT32_MAX})"
SLOT_MAX = 255
SLOT = f"int(max={SLOT_MAX})"

PAGE_DEFAULT, PAGE_MAX = 50, 100


class Forbidden(ReplenishError):
    """The token is valid but its role may not do this (HTTP 403)."""

    http_status = 403


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _authenticate() -> None:
    """Sets g.token (the ApiToken row), g.user (or None for a CLI household token),
    g.role ("household" | "operator") and g.household (None for an operator)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("send 'Authorization: Bearer <token>'")
    session = db()
    row = session.scalars(
        select(ApiToken).where(ApiToken.token_sha256 == token_sha256(token))).one_or_none()
    if row is None:
        raise Unauthorized("invalid API token")
    user = session.get(User, row.user_id) if row.user_id is not None else None
    household_id = row.household_id or (user.household_id if user else None)
    g.token, g.user = row, user
    g.role = user.role if user is not None else "household"
    g.household = session.get(Household, household_id) if household_id else None


def _requiring(allowed, refusal: str | None):
    """A decorator: authenticate, then refuse with 403 unless `allowed()` holds."""
    def decorator(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            _authenticate()
            if not allowed():
                raise Forbidden(refusal)
            return view(*args, **kwargs)

        return wrapped

    return decorator


# Any valid token (household or operator).
token_required = _requiring(lambda: True, None)
# A household's token; an operator's token is refused with 403.
household_required = _requiring(lambda: g.role == "household" and g.household is not None,
                                "this endpoint needs a household's token")
# An operator's token; a household's token is refused with 403 (docs/api.md).
operator_required = _requiring(lambda: g.role == "operator",
                               "this endpoint is for operators only")


# Pagination ------------------------------------------------------------------------


def page(session: Session, query, key, name: str, to_json, *, descending: bool = True,
         cursor_is_int: bool = True, cursor_of=lambda row: row[0].id) -> dict:
    """One page of `query` ordered by the unique `key` column: keyset pagination.

    `?limit=` (1..100, default 50) and `?cursor=` (the `next_cursor` of the page before).
    A keyset cursor stays right while rows are added, unlike an offset.
    """
    limit = query_int("limit", PAGE_DEFAULT, 1, PAGE_MAX)
    cursor = request.args.get("cursor")
    if cursor is not None:
        if cursor_is_int:
            cursor = query_int("cursor", None, 1, INT32_MAX)
        else:
            check_text("cursor", cursor, 100, min_length=1)
        query = query.where(key < cursor if descending else key > cursor)
    query = query.order_by(key.desc() if descending else key.asc()).limit(limit + 1)
    rows = session.execute(query).all()
    more = len(rows) > limit
    rows = rows[:limit]
    items = [to_json(*row) for row in rows]
    next_cursor = None
    if more:
        next_cursor = str(cursor_of(rows[-1]))
    next_url = None
    if next_cursor is not None:
        args = {k: v for k, v in request.args.items() if k != "cursor"}
        next_url = f"{request.path}?{urlencode({**args, 'cursor': next_cursor})}"
    return {name: items, "next_cursor": next_cursor, "next": next_url}


def iso(value) -> str | None:
    """Timestamps are stored as naive UTC; the API writes them as RFC 3339 with Z."""
    return value.isoformat() + "Z" if value else None
