"""Web accounts: registration, password log-in, lockout after repeated failures, and
bearer tokens issued at log-in.

Passwords are hashed with scrypt through werkzeug.security (already installed with
Flask; memory-hard, salted, parameters stored in the hash so they can be raised later).
An unknown email costs the same scrypt verification as a wrong password, and both get
the same message, so neither the answer nor its timing tells which emails exist.

Throttling (table auth_throttle) counts failures per key — "login:<email>",
"login-from:<source address>", "claim:<household id>" — in a 15-minute window; the
limit-th failure locks the key for 15 minutes (HTTP 429 with the time to retry). Keys
live in the database, so every web process shares them. The limit is per kind of key
(`LIMITS`): 5 for an account and a household's claims, but 100 for an address — many
people can share one (a household's or an office's NAT, a mobile carrier's CGNAT, a
proxy without REPLENISH_BEHIND_PROXY), and five mistakes among them used to lock
every one of them out; the per-account limit is what stops guessing one password.
Registration counts every attempt from an address ("register-from:<source>", 10 per
15 minutes), whatever its outcome: creating accounts is what is limited.

A failure must be recorded even though the request fails. Use `attempt(sessions)`: it
commits on success, and on a ReplenishError rolls back everything the block did except
the failures recorded in it, which it writes again and commits before re-raising.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.security import check_password_hash, generate_password_hash

from backend.accounts import devices
from backend.errors import Conflict, Locked, ReplenishError, Unauthorized
from backend.storage.db import utcnow
from backend.storage.models import AuthThrottle, Device, Household, User

log = logging.getLogger(__name__)

ROLES = ("household", "operator")
PASSWORD_MIN = 10
PASSWORD_MAX = 1024  # scrypt takes any length; a cap keeps a request cheap to refuse
EMAIL_MAX = 254
NAME_MAX = 200
MAX_FAILURES = 5  # per account (login:<email>) and per household's claims
ADDRESS_MAX_FAILURES = 100  # per source address: NAT puts many people behind one
REGISTRATIONS_PER_ADDRESS = 10  # attempts per WINDOW from one source address
LIMITS = {"login": MAX_FAILURES, "claim": MAX_FAILURES,
          "login-from": ADDRESS_MAX_FAILURES, "register-from": REGISTRATIONS_PER_ADDRESS}
WINDOW = timedelta(minutes=15)
LOCKOUT = timedelta(minutes=15)
_HASH_METHOD = "scrypt"  # werkzeug's default today; named so a change of default shows
# RFC 5321 dot-atom @ a host name: what JSON Schema's "email" format (and so the JSON
# API's document) means, so the pages and the API accept the same addresses.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_EMAIL = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})+", re.ASCII)
_WRONG = "wrong email or password"
_FAILURES_INFO = "replenish.throttle_failures"
_dummy_hash: str | None = None


# -- validation ---------------------------------------------------------------------

def normalize_email(email: str) -> str:
    return (email or "").strip().lower()


def _check_email(email: str) -> str:
    email = normalize_email(email)
    if not email:
        raise ReplenishError("enter your email address")
    if len(email) > EMAIL_MAX or not _EMAIL.fullmatch(email):
        raise ReplenishError("that does not look like an email address (name@example.org)")
    return email


def _check_password(password: str) -> str:
    if len(password or "") < PASSWORD_MIN:
        raise ReplenishError(f"the password must be at least {PASSWORD_MIN} characters long")
    if len(password) > PASSWORD_MAX:
        raise ReplenishError(f"the password must be at most {PASSWORD_MAX} characters long")
    return password


def hash_password(password: str) -> str:
    return generate_password_hash(password, method=_HASH_METHOD)


def _create_user(session: Session, email: str, password: str, role: str,
                 household_id: int | None) -> User:
    email = _check_email(email)
    _check_password(password)
    if role not in ROLES:
        raise ReplenishError(f"role must be one of {ROLES}")
    if session.scalars(select(User.id).where(User.email == email)).first() is not None:
        raise Conflict("an account with that email exists already: log in instead")
    user = User(email=email, password_hash=hash_password(password), role=role,
                household_id=household_id)
    session.add(user)
    try:
        session.flush()
    except IntegrityError as err:  # registered by someone else a moment ago
        raise Conflict("an account with that email exists already: log in instead") from err
    log.info("user %d created (role %s)", user.id, role)
    return user


# -- accounts -----------------------------------------------------------------------

def register(session: Session, email: str, password: str, household_name: str,
             source: str | None = None) -> User:
    """A new household and its first member (role "household"). With `source` (the
    client address; use `attempt()`), every attempt counts toward that address's limit."""
    if source is not None:
        key = f"register-from:{source}"
        throttle(session, key)
        record_failure(session, key)  # an attempt, whatever comes of it
    name = (household_name or "").strip()
    if not name:
        raise ReplenishError("give your household a name (for example 'Our flat')")
    if len(name) > NAME_MAX:
        raise ReplenishError(f"the household name must be at most {NAME_MAX} characters")
    if not name.isprintable():
        raise ReplenishError("the household name must not contain control characters")
    _check_email(email)
    _check_password(password)
    household = Household(name=name)
    session.add(household)
    session.flush()
    return _create_user(session, email, password, "household", household.id)


def change_password(session: Session, user: User, current: str, new: str,
                    keep_token_id: int | None = None) -> None:
    """The user's own change: the current password first (a wrong one counts toward the
    account's lockout, as at log-in; use `attempt()`), then the new one. The user's
    other API tokens and every web session are revoked: whoever knew the old password
    is out."""
    from sqlalchemy import delete

    from backend.storage.models import ApiToken, WebSession

    key = f"login:{user.email}"
    throttle(session, key)
    if not check_password_hash(user.password_hash, current or ""):
        record_failure(session, key)
        raise Unauthorized("the current password is wrong")
    _check_password(new)
    user.password_hash = hash_password(new)
    session.execute(delete(ApiToken).where(ApiToken.user_id == user.id,
                                           ApiToken.id != (keep_token_id or 0)))
    session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    log.info("user %d changed their password; other tokens and sessions revoked", user.id)


def reset_password(session: Session, email: str, password: str) -> User:
    """An operator's reset (command line): the new password, the account's lockout
    lifted, and every API token and web session of the user revoked."""
    from sqlalchemy import delete

    from backend.storage.models import ApiToken, WebSession

    user = session.scalars(select(User).where(User.email == normalize_email(email))
                           ).one_or_none()
    if user is None:
        raise ReplenishError(f"no account with the email {normalize_email(email)!r}")
    user.password_hash = hash_password(_check_password(password))
    record_success(session, f"login:{user.email}")
    session.execute(delete(ApiToken).where(ApiToken.user_id == user.id))
    session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    log.warning("password of user %d reset by an operator; tokens and sessions revoked",
                user.id)
    return user


def create_operator(session: Session, email: str, password: str) -> User:
    """Manufacturer or operator staff: batches, fleet, revocation; no household."""
    return _create_user(session, email, password, "operator", None)


def authenticate(session: Session, email: str, password: str, source: str) -> User:
    """The user with this email and password, or Unauthorized / Locked.

    `source` is the client address; failures count per email and per source.
    """
    email = normalize_email(email)
    keys = [f"login:{email[:EMAIL_MAX]}", f"login-from:{source}"]
    for key in keys:
        throttle(session, key)
    user = session.scalars(select(User).where(User.email == email)).one_or_none()
    if user is None:
        check_password_hash(_dummy(), password or "")  # same cost as a real check
        ok = False
    else:
        ok = check_password_hash(user.password_hash, password or "")
    if not ok:
        for key in keys:
            record_failure(session, key)
        log.info("failed log-in from %s", source)
        raise Unauthorized(_WRONG)
    record_success(session, keys[0])
    user.last_login_at = utcnow()
    log.info("user %d logged in from %s", user.id, source)
    return user


def _dummy() -> str:
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = hash_password(secrets.token_urlsafe(16))
    return _dummy_hash


def claim_device(session: Session, household: Household, code: str) -> Device:
    """devices.claim behind the claim throttle: wrong codes count toward a lockout."""
    key = f"claim:{household.id}"
    throttle(session, key)
    try:
        device = devices.claim(session, household, code)
    except Conflict:
        raise  # the code was right (already claimed or revoked): not a guess
    except ReplenishError:
        record_failure(session, key)
        log.info("household %d: wrong claim code", household.id)
        raise
    record_success(session, key)
    return device


# -- throttling ---------------------------------------------------------------------

def throttle(session: Session, key: str, now: datetime | None = None) -> None:
    """Raise Locked while `key` is locked out."""
    now = now or utcnow()
    row = session.get(AuthThrottle, key)
    if row is not None and row.locked_until is not None and row.locked_until > now:
        raise Locked.until(row.locked_until, now)


def limit_of(key: str) -> int:
    return LIMITS.get(key.split(":", 1)[0], MAX_FAILURES)


def record_failure(session: Session, key: str, now: datetime | None = None) -> int:
    """Count one failure; the limit-th (`LIMITS`) within WINDOW locks the key for
    LOCKOUT. Returns the failures counted in the current window."""
    now = now or utcnow()
    row = session.get(AuthThrottle, key, with_for_update=True)  # PostgreSQL: row lock
    if row is None:
        row = AuthThrottle(key=key, failures=0, window_start=now)
        session.add(row)
    if now - row.window_start > WINDOW or (row.locked_until and row.locked_until <= now):
        row.failures, row.window_start, row.locked_until = 0, now, None
    row.failures += 1
    if row.failures >= limit_of(key):
        row.locked_until = now + LOCKOUT
        log.warning("%s locked for %d minutes after %d failures", key.split(":")[0],
                    LOCKOUT.seconds // 60, row.failures)
    session.flush()
    session.info.setdefault(_FAILURES_INFO, []).append((key, now))
    return row.failures


def record_success(session: Session, key: str) -> None:
    row = session.get(AuthThrottle, key)
    if row is not None:
        session.delete(row)
        session.flush()


@contextlib.contextmanager
def attempt(sessions: sessionmaker):
    """A writing session for a log-in or claim attempt (see the module docstring)."""
    with sessions() as session:
        try:
            yield session
            session.commit()
        except ReplenishError:
            failures = session.info.pop(_FAILURES_INFO, [])
            session.rollback()
            for key, at in failures:
                record_failure(session, key, at)
            session.info.pop(_FAILURES_INFO, None)
            session.commit()
            raise
        except BaseException:
            session.rollback()
            raise
        finally:
            session.info.pop(_FAILURES_INFO, None)
