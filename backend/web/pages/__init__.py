"""Server-rendered web pages for households and operators (docs/web.md).

One blueprint per area, each a small module (auth, household, devices, orders, sensor,
operator), nested in this one, `pages`. Cross-cutting rules live here and apply to all
of them: the database session per request, who is
logged in, `login_required` / `operator_required`, CSRF on every form, pagination,
and HTML error pages. The JSON API (bearer tokens) and the merchant callbacks are
other blueprints and are not touched by the CSRF check.
"""

from __future__ import annotations

import functools
import logging
import math
import secrets
from dataclasses import dataclass

from flask import Blueprint, abort, g, redirect, render_template, request, session, url_for
from sqlalchemy import func, select

from backend.errors import ReplenishError
from backend.orders import display, notifications
from backend.storage.models import Household
from backend.web.request_db import db, writing  # noqa: F401 (used by the page modules)

log = logging.getLogger(__name__)

bp = Blueprint("pages", __name__)

PER_PAGE = 20
INT32_MAX = 2**31 - 1
ID = f"int(max={INT32_MAX})"  # ids in paths: larger numbers are 404 before any query
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


# -- CSRF -------------------------------------------------------------------------
# A per-session synchronizer token: every form carries it in a hidden field and every
# unsafe request to these pages must send it back. The session cookie is SameSite=Lax
# as a second line.

@bp.app_template_global()
def csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def whole_number(text: str | None) -> int | None:
    """`text` as a whole number if it is one in plain digits (not '²' or '٣'), else None."""
    text = (text or "").strip()
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        return None
    return int(text)


@bp.before_request
def refuse_control_characters():
    """A NUL cannot be stored (PostgreSQL text) and is never meant: refuse it early."""
    path_values = [v for v in (request.view_args or {}).values() if isinstance(v, str)]
    for values in (request.args.values(), request.form.values(), path_values):
        if any("\x00" in value for value in values):
            log.warning("refused a request with a NUL character: %s", request.path)
            return render_template("error.html", status=400, message=(
                "The request contains a NUL character; remove it and try again.")), 400
    return None


@bp.before_request
def check_csrf():
    if request.method in _SAFE_METHODS:
        return None
    sent = request.form.get("csrf_token", "")
    expected = session.get("csrf", "")
    if not sent or not expected or not secrets.compare_digest(sent.encode(),
                                                              expected.encode()):
        log.warning("refused a form without a valid CSRF token: %s %s", request.method,
                    request.path)
        return render_template("error.html", status=400, message=(
            "This form has expired or did not come from this site. Reload the page "
            "and send it again.")), 400
    return None


# -- the household's locale and time zone (backend/orders/display.py) ----------------

def locale_and_zone() -> tuple[str | None, str | None]:
    """The logged-in household's locale and time zone (operators: the defaults)."""
    if "where" not in g:
        user = g.get("user")
        household = (db().get(Household, user.household_id)
                     if user is not None and user.household_id is not None else None)
        g.where = (household.locale, household.timezone) if household else (None, None)
    return g.where


@bp.app_template_global()
def local_time(value, form: str = "medium") -> str:
    where, zone = locale_and_zone()
    return display.when(value, where, zone, form)


@bp.app_template_global()
def local_day(value) -> str:
    where, zone = locale_and_zone()
    return display.day(value, where, zone)


@bp.app_template_global()
def local_day_iso(value) -> str:
    """The same day as local_day, as YYYY-MM-DD (for <time datetime>)."""
    return display.local(value, locale_and_zone()[1]).date().isoformat()


@bp.app_template_global()
def format_money(minor, currency=None) -> str:
    return display.money(minor, currency, locale_and_zone()[0])


@bp.app_template_global()
def plain_price(minor, currency) -> str:
    return display.plain(minor, currency)


@bp.app_template_global()
def format_amount(value, unit) -> str:
    return display.amount(value, unit, locale_and_zone()[0])


@bp.app_template_global()
def order_line(order) -> str:
    return display.of_order(order, locale_and_zone()[0])


@bp.app_template_global()
def product_label(product) -> str:
    return display.product_label(product.name, product.package_amount, product.unit,
                                 locale_and_zone()[0], brand=product.brand)


@bp.app_context_processor
def template_helpers():
    user = g.get("user")
    unread = 0
    if user is not None and user.household_id is not None:
        unread = notifications.unread_count(db(), user.household_id)
    return {"current_user": user, "unread": unread}


# -- who is logged in -------------------------------------------------------------

def login_required(view):
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if g.get("user") is None:
            session["next"] = request.full_path.rstrip("?") if request.method == "GET" else None
            return redirect(url_for("pages.auth.login"))
        return view(*args, **kwargs)

    return wrapped


def household_required(view):
    """A household member's page; an operator has no household and gets 404."""
    @login_required
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if g.user.role != "household" or g.user.household_id is None:
            abort(404)
        return view(*args, **kwargs)

    return wrapped


def operator_required(view):
    """An operator's page; households get 404 (they are never told it exists)."""
    @login_required
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if g.user.role != "operator":
            log.warning("user %d (not an operator) asked for %s", g.user.id, request.path)
            abort(404)
        return view(*args, **kwargs)

    return wrapped


def my_household() -> Household:
    """The logged-in member's household (household_required pages only)."""
    return db().get(Household, g.user.household_id)


# -- pagination ---------------------------------------------------------------------

@dataclass(frozen=True)
class Page:
    items: list
    number: int
    pages: int
    total: int

    @property
    def has_prev(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.pages


def page_number() -> int:
    number = whole_number(request.args.get("page", "1"))
    if number is None or number < 1:
        raise ReplenishError("page must be a whole number from 1")
    return number


def paginate(query, per_page: int = PER_PAGE, scalars: bool = True) -> Page:
    """One page of `query` (a select ordered by the caller) and the page count."""
    number = page_number()
    total = db().scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    pages = max(1, math.ceil(total / per_page))
    number = min(number, pages)
    bounded = query.limit(per_page).offset((number - 1) * per_page)
    rows = db().scalars(bounded) if scalars else db().execute(bounded)
    return Page(list(rows.all()), number, pages, total)


def page_url(number: int) -> str:
    args = {**request.args.to_dict(), "page": number}
    return url_for(request.endpoint, **(request.view_args or {}), **args)


@bp.app_template_global()
def page_link(number: int) -> str:
    return page_url(number)


# -- errors as pages ------------------------------------------------------------------

@bp.errorhandler(ReplenishError)
def replenish_error(err: ReplenishError):
    response = render_template("error.html", status=err.http_status, message=str(err))
    return response, err.http_status, _retry_after(err)


def _retry_after(err: ReplenishError) -> dict:
    seconds = getattr(err, "retry_after_s", 0)
    return {"Retry-After": str(seconds)} if seconds else {}


@bp.errorhandler(404)
def not_found(_err):
    return render_template("error.html", status=404, message="There is no such page."), 404


@bp.after_request
def no_store(response):
    # Pages show a household's own data: never kept by shared caches or the back button.
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def form_error(template: str, err: ReplenishError, **context):
    """Re-render a form with what was wrong, in words; nothing was changed."""
    log.info("form on %s refused: %s", request.path, type(err).__name__)
    return (render_template(template, error=str(err), **context), err.http_status,
            _retry_after(err))


from backend.web.pages import auth, devices, household, operator, orders, sensor  # noqa: E402

bp.before_request(auth.load_user)  # every page knows who is logged in
for _area in (auth, devices, household, operator, orders, sensor):
    bp.register_blueprint(_area.bp)
