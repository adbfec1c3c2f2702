"""The request's database sessions, shared by every blueprint of the web app."""

from __future__ import annotations

import contextlib

from flask import current_app, g
from sqlalchemy.orm import Session


def db() -> Session:
    """The request's reading session (closed by create_app's teardown)."""
    if "db" not in g:
        g.db = current_app.config["SESSIONS"]()
    return g.db


@contextlib.contextmanager
def writing():
    """A writing transaction (BEGIN IMMEDIATE on SQLite), committed when the block ends."""
    with current_app.config["WRITER_SESSIONS"]() as session, session.begin():
        yield session
