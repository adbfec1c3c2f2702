"""Accounts and tokens, the household's settings, the catalogue, notifications."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, g, request
from sqlalchemy import select, update

from backend.accounts import households, tokens
from backend.accounts import users as accounts
from backend.errors import NotFound
from backend.orders.outbound import AddressPolicy, AddressRefused
from backend.orders import catalogue, consent, display
from backend.storage.db import utcnow
from backend.storage.models import ApiToken, Device, Household, Notification, Product, User
from backend.web.api.common import (
    ID,
    Forbidden,
    db,
    household_required,
    iso,
    page,
    token_required,
    writing,
)
from backend.web.api.validation import INT32_MAX, BadRequest, Body, Field, query_bool

bp = Blueprint("household", __name__)
log = logging.getLogger(__name__)

EMAIL = Field(str, "Email address (case does not matter).", required=True, min_length=1,
              max_length=accounts.EMAIL_MAX)

REGISTER = Body({
    "email": Field(str, "Email address (case does not matter).", required=True,
                   min_length=1, max_length=accounts.EMAIL_MAX, format="email"),
    "password": Field(str, f"At least {accounts.PASSWORD_MIN} characters.", required=True,
                      min_length=accounts.PASSWORD_MIN, max_length=accounts.PASSWORD_MAX,
                      write_only=True),
    "household_name": Field(str, "What the household is called, e.g. 'Our flat'.",
                            required=True, min_length=1, max_length=accounts.NAME_MAX),
}, example={"email": "sam@example.org", "password": "a long passphrase",
            "household_name": "Our flat"})
LOGIN = Body({
    "email": EMAIL,
    "password": Field(str, "The account's password.", required=True, min_length=1,
                      max_length=accounts.PASSWORD_MAX, write_only=True),
}, example={"email": "sam@example.org", "password": "a long passphrase"})
PASSWORD_CHANGE = Body({
    "current_password": Field(str, "The password in use now.", required=True, min_length=1,
                              max_length=accounts.PASSWORD_MAX, write_only=True),
    "new_password": Field(str, f"At least {accounts.PASSWORD_MIN} characters.",
                          required=True, min_length=accounts.PASSWORD_MIN,
                          max_length=accounts.PASSWORD_MAX, write_only=True),
}, example={"current_password": "a long passphrase", "new_password": "another passphrase"})
SETTINGS = Body({
    "hold_window_s": Field(int, "Seconds a new order waits, cancellable, before it is "
                           "placed; 0 places it at once.", minimum=0,
                           maximum=households.HOLD_WINDOW_MAX_S),
    "allow_multiple_open": Field(bool, "Allow a new order while the slot has an open one."),
    "max_orders_per_day": Field(int, "Most orders in 24 hours; null for no limit.",
                                nullable=True, minimum=0,
                                maximum=households.ORDERS_PER_DAY_MAX),
    "monthly_limit_cents": Field(int, "Spending limit per calendar month (UTC), in cents; "
                                 "null for no limit.", nullable=True, minimum=0,
                                 maximum=INT32_MAX),
    "webhook_url": Field(str, "http(s) URL that notifications are also POSTed to, signed; "
                         "null to stop.", nullable=True, max_length=500),
    "webhook_secret": Field(str, "Secret the webhook requests are signed with; never "
                            "returned.", nullable=True, max_length=100, write_only=True),
    "name": Field(str, "What the household is called.", min_length=1,
                  max_length=accounts.NAME_MAX),
    "locale": Field(str, "How prices, amounts and dates read, e.g. en, en_GB, de_DE.",
                    min_length=2, max_length=35),
    "timezone": Field(str, "IANA time zone the pages show times in, e.g. Europe/Berlin.",
                      min_length=1, max_length=64),
    "price_tolerance_pct": Field(int, "How far above the price confirmed for a slot "
                                 "(percent) an order may go without asking; 0, the "
                                 "default: not a cent more.", minimum=0,
                                 maximum=consent.TOLERANCE_MAX_PCT),
}, noun="setting", example={"hold_window_s": 300, "max_orders_per_day": 3})


def user_json(user: User | None) -> dict | None:
    if user is None:
        return None
    return {"id": user.id, "email": user.email, "role": user.role,
            "household_id": user.household_id}


def household_json(household: Household) -> dict:
    return {"id": household.id, "name": household.name,
            "hold_window_s": household.hold_window_s,
            "allow_multiple_open": household.allow_multiple_open,
            "max_orders_per_day": household.max_orders_per_day,
            "monthly_limit_cents": household.monthly_limit_cents,
            "webhook_url": household.webhook_url,
            "webhook_secret_set": bool(household.webhook_secret),
            "locale": household.locale, "timezone": household.timezone,
            "price_tolerance_pct": household.price_tolerance_pct}


# -- accounts and tokens ----------------------------------------------------------------

@bp.post("/accounts")
def register():
    data = REGISTER.parse()
    with accounts.attempt(current_app.config["WRITER_SESSIONS"]) as session:
        user = accounts.register(session, data["email"], data["password"],
                                 data["household_name"], request.remote_addr or "unknown")
        token = tokens.issue_for_user(session, user, _token_days())
        answer = {"token": token, "user": user_json(user),
                  "household": household_json(session.get(Household, user.household_id))}
    return answer, 201


@bp.post("/tokens")
def log_in():
    data = LOGIN.parse()
    with accounts.attempt(current_app.config["WRITER_SESSIONS"]) as session:
        user = accounts.authenticate(session, data["email"], data["password"],
                                     request.remote_addr or "unknown")
        answer = {"token": tokens.issue_for_user(session, user, _token_days()),
                  "user": user_json(user)}
    return answer, 201


def _token_days() -> float:
    return current_app.config["SETTINGS"].api_token_days


def token_json(token: ApiToken) -> dict:
    return {"id": token.id, "created_at": iso(token.created_at),
            "expires_at": iso(token.expires_at) if token.expires_at else None,
            "current": token.id == g.token.id}


@bp.get("/tokens")
@token_required
def list_tokens():
    return {"items": [token_json(t) for t in tokens.held_with(db(), g.token)]}


@bp.delete("/tokens/<int:token_id>")
@token_required
def revoke_token(token_id: int):
    if token_id > INT32_MAX:
        raise NotFound(f"no token {token_id} of yours")
    with writing() as session:
        tokens.revoke(session, g.token, token_id)
    return "", 204


@bp.post("/account/password")
@token_required
def change_password():
    if g.user is None:
        raise Forbidden("a household's command-line token has no password to change: "
                        "log in (POST /tokens) and use that token")
    data = PASSWORD_CHANGE.parse()
    with accounts.attempt(current_app.config["WRITER_SESSIONS"]) as session:
        accounts.change_password(session, session.get(User, g.user.id),
                                 data["current_password"], data["new_password"],
                                 keep_token_id=g.token.id)
    return "", 204


@bp.get("/tokens/current")
@token_required
def whoami():
    return {"role": g.role, "user": user_json(g.user),
            "household_id": g.household.id if g.household else None,
            "created_at": iso(g.token.created_at),
            "expires_at": iso(g.token.expires_at) if g.token.expires_at else None}


@bp.delete("/tokens/current")
@token_required
def log_out():
    with writing() as session:
        token = session.get(ApiToken, g.token.id)
        if token is not None:
            session.delete(token)
    return "", 204


# -- the household ----------------------------------------------------------------------

@bp.get("/household")
@household_required
def get_household():
    return household_json(g.household)


@bp.patch("/household")
@household_required
def update_household():
    changes = SETTINGS.parse()
    url = changes.get("webhook_url")
    if url is not None:
        check_webhook_url(url, g.household.id)
    try:
        if "locale" in changes:
            changes["locale"] = display.check_locale(changes["locale"])
        if "timezone" in changes:
            changes["timezone"] = display.check_timezone(changes["timezone"])
    except display.BadLocale as err:
        raise BadRequest(str(err)) from None
    if "name" in changes:
        changes["name"] = changes["name"].strip()
        if not changes["name"]:
            raise BadRequest("name must not be empty")
    with writing() as session:
        household = session.get(Household, g.household.id)
        for name, value in changes.items():
            setattr(household, name, value)
        return household_json(household)


def check_webhook_url(url: str, household_id: int) -> None:
    """The outbound address policy, when the URL is set (again when a call is made)."""
    policy = AddressPolicy(current_app.config["SETTINGS"].webhook_allow_networks)
    try:
        policy.check(url, "webhook_url")
    except AddressRefused as err:
        log.warning("household %d: webhook_url refused: %s", household_id, err)
        raise BadRequest(str(err)) from None


@bp.get("/products")
@token_required
def list_products():
    return page(db(), select(Product), Product.sku, "products", product_json,
                descending=False, cursor_is_int=False, cursor_of=lambda row: row[0].sku)


product_json = catalogue.product_json

# -- notifications ------------------------------------------------------------------------

def notification_json(note: Notification, device_id: str | None) -> dict:
    return {"id": note.id, "kind": note.kind, "message": note.message,
            "order_id": note.order_id, "device_id": device_id,
            "created_at": iso(note.created_at), "read": note.read_at is not None,
            "read_at": iso(note.read_at)}


def _notifications():
    return (select(Notification, Device.device_id)
            .outerjoin(Device, Device.id == Notification.device_pk)
            .where(Notification.household_id == g.household.id))


@bp.get("/notifications")
@household_required
def list_notifications():
    query = _notifications()
    unread = query_bool("unread")
    if unread is not None:
        query = query.where(Notification.read_at.is_(None) if unread
                            else Notification.read_at.is_not(None))
    return page(db(), query, Notification.id, "notifications", notification_json)


@bp.post(f"/notifications/<{ID}:notification_id>/read")
@household_required
def mark_read(notification_id: int):
    with writing() as session:
        row = session.execute(_notifications().where(
            Notification.id == notification_id)).one_or_none()
        if row is None:
            raise NotFound(f"no notification {notification_id} in this household")
        note, device_id = row
        if note.read_at is None:
            note.read_at = utcnow()
        return notification_json(note, device_id)


@bp.post("/notifications/read-all")
@household_required
def mark_all_read():
    with writing() as session:
        marked = session.execute(
            update(Notification)
            .where(Notification.household_id == g.household.id,
                   Notification.read_at.is_(None))
            .values(read_at=utcnow()).execution_options(synchronize_session=False)
        ).rowcount
    return {"marked": marked}
