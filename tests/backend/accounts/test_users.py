"""backend/accounts/users.py on both databases: registration, log-in, lockout, tokens, CLI."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from backend.accounts import tokens
from backend.accounts import users as accounts
from backend.errors import Conflict, Locked, ReplenishError, Unauthorized
from backend.storage.db import make_engine, make_sessionmaker, utcnow
from backend.storage.models import ApiToken, AuthThrottle, Household, User

PASSWORD = "correct horse battery"


@pytest.fixture
def sessions(settings):
    engine = make_engine(settings.db_url)
    yield make_sessionmaker(engine, writer=True)
    engine.dispose()


def _register(sessions, email="Ann@Example.org", password=PASSWORD, name="Ann's flat"):
    with sessions() as session, session.begin():
        return accounts.register(session, email, password, name)


def _login(sessions, email, password, source="127.0.0.1"):
    with accounts.attempt(sessions) as session:
        return accounts.authenticate(session, email, password, source)


def test_register_creates_household_and_user_with_a_standard_hash(sessions):
    user = _register(sessions)
    with sessions() as session:
        stored = session.get(User, user.id)
        assert stored.email == "ann@example.org" and stored.role == "household"
        assert session.get(Household, stored.household_id).name == "Ann's flat"
        assert stored.password_hash.startswith("scrypt:") and PASSWORD not in stored.password_hash


@pytest.mark.parametrize("email,password,name,words", [
    ("not-an-email", PASSWORD, "Flat", "email address"),
    ("0@0.com*", PASSWORD, "Flat", "email address"),
    ("a b@example.org", PASSWORD, "Flat", "email address"),
    ("a@example..org", PASSWORD, "Flat", "email address"),
    ("", PASSWORD, "Flat", "enter your email"),
    ("a@example.org", "short", "Flat", "at least 10 characters"),
    ("a@example.org", PASSWORD, "  ", "household a name"),
])
def test_register_refuses_bad_input_in_words_and_changes_nothing(sessions, email, password,
                                                                 name, words):
    with pytest.raises(ReplenishError, match=words):
        _register(sessions, email, password, name)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 0
        assert session.scalar(select(func.count()).select_from(Household)) == 0


def test_taken_email_is_a_conflict(sessions):
    _register(sessions)
    with pytest.raises(Conflict):
        _register(sessions, email="ann@EXAMPLE.org ")


def test_login_right_and_wrong(sessions):
    user = _register(sessions)
    assert _login(sessions, " ANN@example.org", PASSWORD).id == user.id
    with pytest.raises(Unauthorized) as wrong_password:
        _login(sessions, "ann@example.org", PASSWORD + "x")
    with pytest.raises(Unauthorized) as unknown:
        _login(sessions, "bob@example.org", PASSWORD)
    assert str(wrong_password.value) == str(unknown.value) == "wrong email or password"
    with sessions() as session:
        assert session.get(User, user.id).last_login_at is not None


def test_five_failures_lock_the_email_and_success_resets(sessions):
    _register(sessions)
    for _ in range(accounts.MAX_FAILURES):
        with pytest.raises(Unauthorized):
            _login(sessions, "ann@example.org", "wrong password!", source=f"10.0.0.{_}")
    with pytest.raises(Locked, match="try again after") as locked:
        _login(sessions, "ann@example.org", PASSWORD, source="127.0.0.9")  # even the right one
    assert locked.value.http_status == 429 and 0 < locked.value.retry_after_s <= 15 * 60

    with sessions() as session, session.begin():  # the lockout has run out
        row = session.get(AuthThrottle, "login:ann@example.org")
        row.locked_until = utcnow() - timedelta(seconds=1)
    assert _login(sessions, "ann@example.org", PASSWORD, source="127.0.0.9")
    with sessions() as session:
        assert session.get(AuthThrottle, "login:ann@example.org") is None


def test_one_source_is_locked_across_emails_only_at_its_much_higher_limit(sessions):
    """Many people share an address behind NAT: five mistakes among them lock no one
    else out; the address's own limit is twenty times the account's."""
    assert accounts.ADDRESS_MAX_FAILURES >= 20 * accounts.MAX_FAILURES
    _register(sessions)
    for n in range(accounts.MAX_FAILURES):
        with pytest.raises(Unauthorized):
            _login(sessions, f"user{n}@example.org", "whatever12345", source="127.0.0.5")
    assert _login(sessions, "ann@example.org", PASSWORD, source="127.0.0.5")
    with sessions() as session, session.begin():  # the rest of the address's allowance
        used = session.get(AuthThrottle, "login-from:127.0.0.5").failures
        for _ in range(accounts.ADDRESS_MAX_FAILURES - used - 1):
            accounts.record_failure(session, "login-from:127.0.0.5")
    with pytest.raises(Unauthorized):
        _login(sessions, "someone@example.org", "whatever12345", source="127.0.0.5")
    with pytest.raises(Locked):
        _login(sessions, "ann@example.org", PASSWORD, source="127.0.0.5")
    assert _login(sessions, "ann@example.org", PASSWORD, source="127.0.0.6")


def test_registration_is_limited_per_address_whatever_the_outcome(sessions):
    def register(n, source="127.0.0.7", password=PASSWORD):
        with accounts.attempt(sessions) as session:
            return accounts.register(session, f"u{n}@example.org", password, "Flat", source)

    for n in range(accounts.REGISTRATIONS_PER_ADDRESS - 2):
        register(n)
    with pytest.raises(ReplenishError, match="at least 10 characters"):
        register("bad", password="short")  # a refused attempt counts too
    register("last")
    with pytest.raises(Locked, match="try again after"):
        register("one-more")
    register("elsewhere", source="127.0.0.8")
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(User)) == \
            accounts.REGISTRATIONS_PER_ADDRESS


def test_failures_outside_the_window_start_over(sessions):
    with sessions() as session, session.begin():
        start = utcnow() - accounts.WINDOW - timedelta(minutes=1)
        for _ in range(accounts.MAX_FAILURES - 1):
            accounts.record_failure(session, "claim:1", start)
        assert accounts.record_failure(session, "claim:1") == 1
        accounts.throttle(session, "claim:1")


def test_attempt_keeps_failures_and_drops_everything_else(sessions):
    with pytest.raises(ReplenishError), accounts.attempt(sessions) as session:
        session.add(Household(name="should vanish"))
        accounts.record_failure(session, "claim:7")
        raise ReplenishError("bad code")
    with sessions() as session:
        assert session.get(AuthThrottle, "claim:7").failures == 1
        assert session.scalar(select(func.count()).select_from(Household)) == 0


def test_a_user_token_is_stored_only_as_its_hash(sessions):
    user = _register(sessions)
    with sessions() as session, session.begin():
        token = tokens.issue_for_user(session, session.get(User, user.id))
    with sessions() as session:
        row = session.scalars(select(ApiToken)).one()
        assert (row.user_id, row.household_id) == (user.id, user.household_id)
        assert row.token_sha256 != token and token not in row.token_sha256
        assert tokens.authenticate(session, token).household.id == user.household_id


def test_create_operator_command(settings):
    env = {"REPLENISH_DATA_DIR": str(settings.data_dir), "DATABASE_URL": settings.db_url,
           "REPLENISH_OPERATOR_PASSWORD": PASSWORD, "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "backend.cli", "user", "create-operator",
                           "Ops@Example.org"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "operator" in done.stdout and PASSWORD not in done.stdout + done.stderr
    again = subprocess.run([sys.executable, "-m", "backend.cli", "user", "create-operator",
                            "ops@example.org"], capture_output=True, text=True, env=env,
                           timeout=120)
    assert again.returncode == 1 and "exists already" in again.stderr
    engine = make_engine(settings.db_url)
    with make_sessionmaker(engine)() as session:
        user = session.scalars(select(User)).one()
        assert (user.email, user.role, user.household_id) == ("ops@example.org", "operator",
                                                              None)
    engine.dispose()


def test_operator_resets_a_password_from_the_command_line(settings, sessions):
    user = _register(sessions)
    with sessions() as session, session.begin():
        old_token = tokens.issue_for_user(session, session.get(User, user.id))
    for _ in range(accounts.MAX_FAILURES):
        with pytest.raises(Unauthorized):
            _login(sessions, "ann@example.org", "forgotten password")
    env = {"REPLENISH_DATA_DIR": str(settings.data_dir), "DATABASE_URL": settings.db_url,
           "REPLENISH_NEW_PASSWORD": "a brand new password", "PATH": "/usr/bin:/bin"}

    def reset(email):
        return subprocess.run([sys.executable, "-m", "backend.cli", "user", "reset-password",
                               email], capture_output=True, text=True, env=env, timeout=120)

    done = reset("ANN@example.org")
    assert done.returncode == 0, done.stderr
    assert f"user {user.id} (ann@example.org): new password set" in done.stdout
    assert "a brand new password" not in done.stdout + done.stderr
    assert _login(sessions, "ann@example.org", "a brand new password")  # lockout lifted
    with pytest.raises(Unauthorized):
        _login(sessions, "ann@example.org", PASSWORD)
    with sessions() as session, pytest.raises(Unauthorized):
        tokens.authenticate(session, old_token)  # revoked with the old password
    nobody = reset("nobody@example.org")
    assert nobody.returncode == 1 and "no account with the email" in nobody.stderr
    assert "Traceback" not in nobody.stderr
