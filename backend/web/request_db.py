"""The request's database sessions, shared by every blueprint of the web app: opened
on first use in a request, closed when the request ends (both here)."""

from __future__ import annotations

import contextlib

from flask import Flask, current_app, g
from sqlalchemy.orm import Session, sessionmaker


def init_app(app: Flask, sessions: sessionmaker, writer_sessions: sessionmaker) -> None:
    app.config["SESSIONS"] = sessions
    app.config["WRITER_SESSIONS"] = writer_sessions

    @app.teardown_appcontext
    def close_session(_exc):
        session = g.pop("db", None)
        if session is not None:
            session.close()


def db() -> Session:
    """The request's reading session (closed by `init_app`'s teardown)."""
    if "db" not in g:
        g.db = current_app.config["SESSIONS"]()
    return g.db


@contextlib.contextmanager
def writing():
    """A writing transaction (BEGIN IMMEDIATE on SQLite), committed when the block ends."""
    with current_app.config["WRITER_SESSIONS"]() as session, session.begin():
        yield session
