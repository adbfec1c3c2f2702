"""Helpers for the page tests: a real app on the test database and a logged-in client."""

from __future__ import annotations

import re
import secrets

from backend import accounts
from backend.db import make_engine, make_sessionmaker
from backend.web import create_app

PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class App:
    """create_app on `settings`, with reader and writer sessions like the backend's."""

    def __init__(self, settings):
        self.engine = make_engine(settings.db_url)
        self.sessions = make_sessionmaker(self.engine)
        self.writer = make_sessionmaker(self.engine, writer=True)
        self.flask = create_app(self.sessions, self.writer, settings)
        self.flask.testing = True

    def client(self, source: str = "127.0.0.1"):
        client = self.flask.test_client()
        client.environ_base["REMOTE_ADDR"] = source
        return client

    def close(self):
        self.engine.dispose()


def csrf(client, path: str = "/login") -> str:
    page = client.get(path)
    match = _CSRF.search(page.get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def post(client, path: str, data: dict | None = None, token_from: str | None = None):
    """A form POST with the CSRF token taken from `token_from` (default: the path)."""
    token = csrf(client, token_from or "/devices" if path.startswith("/devices")
                 else token_from or path)
    return client.post(path, data={**(data or {}), "csrf_token": token})


def register(client, email: str | None = None, name: str = "Test flat"):
    email = email or f"u{secrets.token_hex(4)}@example.org"
    token = csrf(client, "/register")
    response = client.post("/register", data={
        "email": email, "password": PASSWORD, "password_again": PASSWORD,
        "household_name": name, "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)
    return email


def login(client, email: str, password: str = PASSWORD):
    token = csrf(client, "/login")
    return client.post("/login", data={"email": email, "password": password,
                                       "csrf_token": token})


def make_operator(app: App, email: str = "ops@example.org") -> str:
    with app.writer() as session, session.begin():
        accounts.create_operator(session, email, PASSWORD)
    return email
