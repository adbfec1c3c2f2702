"""The household's settings: order policies (docs/orders.md: hold window, one or several
open orders, daily order limit, monthly spending limit), its notification webhook
(checked against the outbound address policy, docs/security.md), its name, the price
tolerance for consent, and the locale and time zone its pages read in."""

from __future__ import annotations

import logging
import zoneinfo
from decimal import Decimal, InvalidOperation

from flask import Blueprint, current_app, g, redirect, render_template, request, url_for

from backend.accounts import households
from backend.errors import ReplenishError
from backend.orders.outbound import AddressPolicy, AddressRefused
from backend.orders import consent, display
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


# Offered on the settings page; the API takes any locale Babel knows.
LOCALES = ("en", "en_GB", "en_US", "de_DE", "de_AT", "fr_FR", "nl_NL", "es_ES", "it_IT",
           "pl_PL", "sv_SE", "da_DK", "ja_JP")
TIMEZONES = sorted(zoneinfo.available_timezones())


def _locale_choices(current: str) -> list[tuple[str, str]]:
    codes = list(LOCALES) + ([current] if current not in LOCALES else [])
    return [(code, display.locale(code).get_display_name(code) + f" ({code})")
            for code in codes]


def _page(household: Household, **more) -> dict:
    return {"household": household, "hold_max_min": HOLD_MAX_MIN,
            "tolerance_max": consent.TOLERANCE_MAX_PCT, "timezones": TIMEZONES,
            "locales": _locale_choices(household.locale), **more}


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
        **_parse_household(form),
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


def _parse_household(form) -> dict:
    """Name, tolerance, locale and zone: each only when the form sends it."""
    out: dict = {}
    if "name" in form:
        name = form.get("name", "").strip()
        if not name or len(name) > households_name_max or not name.isprintable():
            raise ReplenishError(f"the household name must be 1 to {households_name_max} "
                                 "printable characters")
        out["name"] = name
    if "price_tolerance_pct" in form:
        pct = whole_number(form.get("price_tolerance_pct") or "0")
        if pct is None or pct > consent.TOLERANCE_MAX_PCT:
            raise ReplenishError("the price tolerance must be a whole number of percent "
                                 f"from 0 to {consent.TOLERANCE_MAX_PCT}")
        out["price_tolerance_pct"] = pct
    try:
        if "locale" in form:
            out["locale"] = display.check_locale(form.get("locale", ""))
        if "timezone" in form:
            out["timezone"] = display.check_timezone(form.get("timezone", "").strip())
    except display.BadLocale as err:
        raise ReplenishError(str(err)) from None
    return out


households_name_max = 200


@bp.route("/settings", methods=["GET", "POST"])
@household_required
def settings():
    if request.method == "GET":
        return render_template("household/settings.html",
                               **_page(my_household(), saved=request.args.get("saved")))
    try:
        changes = parse_settings(request.form)
    except ReplenishError as err:
        return form_error("household/settings.html", err, **_page(my_household()))
    with writing() as s:
        household = s.get(Household, g.user.household_id)
        for name, value in changes.items():
            setattr(household, name, value)
    log.info("household %d changed its order policies", g.user.household_id)
    return redirect(url_for("pages.household.settings", saved=1))
