"""Register, log in, log out; the server side of a browser session (web_sessions).

The cookie (signed by the app's secret key, HttpOnly, SameSite=Lax, Secure over https)
holds a random session id and the CSRF token. The database keeps only the id's
SHA-256. Logging in clears the cookie and makes a new id (no session fixation);
logging out deletes the row, so a copied cookie stops working.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import timedelta

from flask import Blueprint, current_app, g, redirect, render_template, request, session, url_for
from sqlalchemy import delete

from backend.accounts import tokens
from backend.accounts import users as accounts
from backend.errors import ReplenishError
from backend.storage.db import utcnow
from backend.storage.models import User, WebSession
from backend.web.pages import db, form_error, login_required, writing

bp = Blueprint("auth", __name__)

log = logging.getLogger(__name__)

SESSION_LIFETIME = timedelta(days=14)


def _sid_hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def load_user():
    """g.user from the session cookie; run before every page (pages/__init__.py)."""
    g.user = None
    sid = session.get("sid")
    if not sid:
        return
    row = db().get(WebSession, _sid_hash(sid))
    if row is None or row.expires_at <= utcnow():
        session.pop("sid", None)
        return
    g.user = db().get(User, row.user_id)


def _start_session(user: User) -> None:
    """A fresh cookie with a new id and CSRF token for `user` (no fixation)."""
    nxt = session.get("next")
    session.clear()
    sid = secrets.token_urlsafe(32)
    with writing() as s:
        s.add(WebSession(id_sha256=_sid_hash(sid), user_id=user.id,
                         expires_at=utcnow() + SESSION_LIFETIME))
        # Expired rows of this user go now; nobody else's are touched.
        s.execute(delete(WebSession).where(WebSession.user_id == user.id,
                                           WebSession.expires_at <= utcnow()))
    session["sid"] = sid
    session["next"] = nxt


def _after_login(user: User):
    nxt = session.pop("next", None)
    if user.role == "operator":
        default = url_for("pages.operator.fleet")
    else:
        default = url_for("pages.devices.devices")
    if nxt and nxt.startswith("/") and not nxt.startswith("//") and "\\" not in nxt:
        return redirect(nxt)
    return redirect(default)


def _source() -> str:
    return request.remote_addr or "unknown"


@bp.route("/register", methods=["GET", "POST"])
def register():
    if request.method == "GET":
        return render_template("auth/register.html")
    form = request.form
    try:
        if form.get("password", "") != form.get("password_again", ""):
            raise ReplenishError("the two passwords differ: type the same one twice")
        with accounts.attempt(current_app.config["WRITER_SESSIONS"]) as s:
            user = accounts.register(s, form.get("email", ""), form.get("password", ""),
                                     form.get("household_name", ""), _source())
    except ReplenishError as err:
        return form_error("auth/register.html", err, email=form.get("email", ""),
                          household_name=form.get("household_name", ""))
    _start_session(user)
    return _after_login(user)


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        if g.user is not None:
            return _after_login(g.user)
        return render_template("auth/login.html")
    email = request.form.get("email", "")
    try:
        with accounts.attempt(current_app.config["WRITER_SESSIONS"]) as s:
            user = accounts.authenticate(s, email, request.form.get("password", ""),
                                         _source())
    except ReplenishError as err:
        return form_error("auth/login.html", err, email=email)
    _start_session(user)
    return _after_login(user)


@bp.post("/logout")
@login_required
def logout():
    sid = session.get("sid")
    if sid:
        with writing() as s:
            s.execute(delete(WebSession).where(WebSession.id_sha256 == _sid_hash(sid)))
    log.info("user %d logged out", g.user.id)
    session.clear()
    return redirect(url_for("pages.auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password():
    """The user's own password change: every session (this one too) and every API token
    of the user end; this browser gets a fresh session at once."""
    if request.method == "GET":
        return render_template("auth/password.html")
    form = request.form
    try:
        if form.get("new_password", "") != form.get("new_password_again", ""):
            raise ReplenishError("the two new passwords differ: type the same one twice")
        with accounts.attempt(current_app.config["WRITER_SESSIONS"]) as s:
            user = s.get(User, g.user.id)
            accounts.change_password(s, user, form.get("current_password", ""),
                                     form.get("new_password", ""))
    except ReplenishError as err:
        return form_error("auth/password.html", err)
    _start_session(user)
    return render_template("auth/password.html", changed=True)


@bp.get("/account/tokens")
@login_required
def api_tokens():
    """The user's API tokens (from the JSON API's log-in): when they expire; revoke."""
    return render_template("auth/tokens.html", tokens=tokens.of_user(db(), g.user.id),
                           revoked=request.args.get("revoked"))


@bp.post("/account/tokens/<int(max=2147483647):token_id>/revoke")
@login_required
def revoke_api_token(token_id: int):
    with writing() as s:
        tokens.revoke_of_user(s, g.user.id, token_id)  # NotFound for anyone else's
    return redirect(url_for("pages.auth.api_tokens", revoked=token_id))


@bp.get("/")
def home():
    if g.user is None:
        return redirect(url_for("pages.auth.login"))
    return _after_login(g.user)
