"""The household's order policies (docs/orders.md): hold window, one or several open
orders, daily order limit, monthly spending limit; and its notification webhook
(checked against the outbound address policy, docs/security.md)."""

from __future__ import annotations

import logging
from decimal import Decimal, InvalidOperation

from flask import Blueprint, current_app, g, redirect, render_template, request, url_for

from backend.accounts import households
from backend.errors import ReplenishError
from backend.orders.outbound import AddressPolicy, AddressRefused
from backend.storage.models import Household
from backend.web.pages import (
    form_error,
    household_required,
    my_household,
    whole_number,
    writing,
)

bp = Blueprint("household", __name__)

log = logging.getLogger(__name__)

HOLD_MAX_MIN = households.HOLD_WINDOW_MAX_S // 60
ORDERS_PER_DAY_MAX = households.ORDERS_PER_DAY_MAX
MONTHLY_MAX = Decimal("1000000")
WEBHOOK_URL_MAX = 500  # the column's size
WEBHOOK_SECRET_MAX = 100


def _optional_whole(text: str, what: str, high: int) -> int | None:
    if not (text or "").strip():
        return None
    number = whole_number(text)
    if number is None or number > high:
        raise ReplenishError(f"{what} must be empty (no limit) or a whole number "
                             f"from 0 to {high}")
    return number


def _money_cents(text: str) -> int | None:
    text = (text or "").strip().replace(",", ".")
    if not text:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal(-1)
    if not value.is_finite() or not 0 <= value <= MONTHLY_MAX or value != round(value, 2):
        raise ReplenishError("the monthly limit must be empty (no limit) or an amount "
                             "like 40 or 39.90")
    return int(value * 100)


def parse_settings(form) -> dict:
    hold = whole_number(form.get("hold_window_min"))
    if hold is None or hold > HOLD_MAX_MIN:
        raise ReplenishError(f"the hold window must be a whole number of minutes from 0 "
                             f"to {HOLD_MAX_MIN}")
    return {
        "hold_window_s": hold * 60,
        "allow_multiple_open": form.get("allow_multiple_open") == "on",
        "max_orders_per_day": _optional_whole(form.get("max_orders_per_day"),
                                              "the daily order limit", ORDERS_PER_DAY_MAX),
        "monthly_limit_cents": _money_cents(form.get("monthly_limit")),
        **_webhook(form),
    }


def _webhook(form) -> dict:
    """The webhook fields, when the form has them: an empty URL stops the webhook; an
    empty secret keeps the one set (it is never shown)."""
    changes = {}
    if "webhook_url" in form:
        url = form.get("webhook_url", "").strip()
        if len(url) > WEBHOOK_URL_MAX:
            raise ReplenishError(f"the webhook URL must be at most {WEBHOOK_URL_MAX} "
                                 f"characters")
        if url:
            policy = AddressPolicy(current_app.config["SETTINGS"].webhook_allow_networks)
            try:
                policy.check(url, "the webhook URL")
            except AddressRefused as err:
                log.warning("household %d: webhook_url refused: %s", g.user.household_id, err)
                raise
        changes["webhook_url"] = url or None
    if secret := form.get("webhook_secret", ""):
        if len(secret) > WEBHOOK_SECRET_MAX:
            raise ReplenishError(f"the webhook secret must be at most {WEBHOOK_SECRET_MAX} "
                                 f"characters")
        changes["webhook_secret"] = secret
    return changes


@bp.route("/settings", methods=["GET", "POST"])
@household_required
def settings():
    if request.method == "GET":
        return render_template("household/settings.html", household=my_household(),
                               hold_max_min=HOLD_MAX_MIN,
                               saved=request.args.get("saved"))
    try:
        changes = parse_settings(request.form)
    except ReplenishError as err:
        return form_error("household/settings.html", err, household=my_household(),
                          hold_max_min=HOLD_MAX_MIN)
    with writing() as s:
        household = s.get(Household, g.user.household_id)
        for name, value in changes.items():
            setattr(household, name, value)
    log.info("household %d changed its order policies", g.user.household_id)
    return redirect(url_for("pages.household.settings", saved=1))
