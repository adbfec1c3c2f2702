"""Prices, amounts, order lines and times as a household reads them: its locale (Babel's
CLDR data) and its time zone (`zoneinfo`). Stored values stay as they are: minor units
of an ISO 4217 currency, amounts in the product's unit, naive UTC datetimes.

    >>> money(3798, "EUR", "en")
    '€37.98'
    >>> money(3798, "EUR", "de_DE")
    '37,98\\xa0€'
    >>> money(1200, "JPY", "en")
    '¥1,200'
    >>> pack(1000, "g", "en")
    '1 kg'
    >>> order_line(2, "Coffee beans", 1000, "g", 3798, "EUR", "en")
    '2 × Coffee beans 1 kg · €37.98'
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_date as _babel_date
from babel.dates import format_datetime as _babel_datetime
from babel.dates import format_skeleton as _babel_skeleton
from babel.dates import format_time as _babel_time
from babel.numbers import format_currency, format_decimal, get_currency_precision

DEFAULT_LOCALE = "en"
DEFAULT_TIMEZONE = "UTC"
UNITS = ("g", "ml", "doses", "pcs")
# A pack of 1000 g reads "1 kg"; doses and pieces are counted.
_BIGGER = {"g": ("kg", 1000), "ml": ("l", 1000)}
_COUNTED = {"doses": "doses", "pcs": "pcs"}


class BadLocale(ValueError):
    pass


@functools.cache
def locale(name: str | None) -> Locale:
    try:
        return Locale.parse((name or DEFAULT_LOCALE).replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError) as err:
        raise BadLocale(f"unknown locale {name!r}; use e.g. en, en_GB, de_DE, fr_FR") from err


@functools.cache
def timezone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or DEFAULT_TIMEZONE)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise BadLocale(f"unknown time zone {name!r}; use an IANA name such as "
                        "Europe/Berlin") from err


def check_locale(name: str) -> str:
    return str(locale(name))


def check_timezone(name: str) -> str:
    timezone(name)
    return name


def minor_digits(currency: str) -> int:
    """Digits after the decimal point in `currency` (ISO 4217): 2 for EUR, 0 for JPY."""
    return get_currency_precision(currency)


def to_minor(amount: Decimal, currency: str) -> int:
    """A decimal amount ("37.98") in minor units, refusing more digits than it has."""
    scaled = amount.scaleb(minor_digits(currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} has more decimals than {currency} allows")
    return int(scaled)


def plain(minor: int, currency: str) -> str:
    """Minor units as a plain decimal, for form fields: plain(899, "EUR") == "8.99"."""
    return str(Decimal(minor).scaleb(-minor_digits(currency)))


def money(minor: int | None, currency: str | None, where: str | None = None) -> str:
    if minor is None:
        return "—"
    currency = currency or "EUR"
    amount = Decimal(minor).scaleb(-minor_digits(currency))
    return format_currency(amount, currency, locale=locale(where))


def amount(value: float | None, unit: str | None, where: str | None = None) -> str:
    """An amount in a product's unit, e.g. '640 g', '1.2 kg', '12 doses'."""
    if value is None:
        return "unknown"
    unit = unit or ""
    if unit in _BIGGER and abs(value) >= _BIGGER[unit][1]:
        big, factor = _BIGGER[unit]
        return f"{format_decimal(round(value / factor, 2), locale=locale(where))} {big}"
    shown = round(value) if abs(value) >= 10 else round(value, 1)
    return f"{format_decimal(shown, locale=locale(where))} {_COUNTED.get(unit, unit)}".strip()


def pack(package_amount: int | None, unit: str | None, where: str | None = None) -> str:
    if not package_amount:
        return ""
    return amount(package_amount, unit, where)


def product_label(name: str, package_amount: int | None, unit: str | None,
                  where: str | None = None, brand: str | None = None) -> str:
    """'Coffee beans 1 kg' (with the brand first when asked: 'Acme Coffee beans 1 kg')."""
    text = " ".join(p for p in (brand, name, pack(package_amount, unit, where)) if p)
    return text


def order_line(quantity: int, name: str, package_amount: int | None, unit: str | None,
               total_minor: int, currency: str | None, where: str | None = None) -> str:
    return (f"{quantity} × {product_label(name, package_amount, unit, where)} · "
            f"{money(total_minor, currency, where)}")


def of_order(order, where: str | None = None) -> str:
    """An order's line from its snapshot (orders from before snapshots show the SKU)."""
    return order_line(order.quantity, order.product_name or order.product_sku,
                      order.pack_amount, order.pack_unit, order.total_cents,
                      order.currency, where)


def when(value: datetime | None, where: str | None = None, zone: str | None = None,
         form: str = "medium") -> str:
    """A stored (naive UTC) time in the household's zone and locale, with the zone."""
    if value is None:
        return "—"
    local = value.replace(tzinfo=UTC).astimezone(timezone(zone))
    return _babel_datetime(local, format=form, locale=locale(where)) + f" {local.tzname()}"


def skeleton(value: datetime, pattern: str, where: str | None = None) -> str:
    """An aware time by a CLDR skeleton in the locale's order: "MMMd" is 'Dec 4' in
    English, '4. Dez.' in German."""
    return _babel_skeleton(pattern, value, tzinfo=value.tzinfo, locale=locale(where))


def clock(value: datetime, form: str = "short", where: str | None = None) -> str:
    """The time of day of an aware time as the locale writes it: '2:05 PM' in English,
    '14:05' in German; "medium" adds the seconds."""
    return _babel_time(value, format=form, tzinfo=value.tzinfo, locale=locale(where))


def number(value: float, where: str | None = None) -> str:
    return format_decimal(value, locale=locale(where))


def local(value: datetime, zone: str | None = None) -> datetime:
    """A stored (naive UTC) time as an aware time in the zone."""
    return value.replace(tzinfo=UTC).astimezone(timezone(zone))


def day(value: datetime | None, where: str | None = None, zone: str | None = None) -> str:
    """The date of a stored (naive UTC) time in the household's zone: 'Dec 27, 2026'."""
    if value is None:
        return "—"
    local = value.replace(tzinfo=UTC).astimezone(timezone(zone))
    return _babel_date(local.date(), format="medium", locale=locale(where))


def duration(days: float) -> str:
    """A span in words, rounded as people say it: "5 hours", "1.5 days", "12 days"."""
    if days * 24 < 0.5:  # "over 0 hours" read as if nothing had been measured
        return "less than an hour"
    if days < 1:
        hours = round(days * 24)
        return f"{hours} hour{'s' if hours != 1 else ''}"
    rounded = round(days, 1) if days < 10 else round(days)
    return f"{rounded:g} day{'s' if rounded != 1 else ''}"
