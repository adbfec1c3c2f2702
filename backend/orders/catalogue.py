"""The catalogue: products operators manage (API, CLI, CSV import) and merchants price.

A product is a SKU with a name, an optional brand, a pack (amount in a unit), a price
per pack in minor units of an ISO 4217 currency, an optional GTIN and image, and
whether it can be ordered now. Changing a price never changes an order already made
(orders keep a snapshot) and never raises what a slot orders at without consent: a
dearer press waits for the household (backend/orders/consent.py).
"""

from __future__ import annotations

import csv
import io
import logging
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from babel.numbers import list_currencies
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.errors import NotFound, ReplenishError
from backend.orders import display
from backend.storage.db import utcnow
from backend.storage.models import Product

log = logging.getLogger(__name__)

SKU = re.compile(r"[A-Z0-9][A-Z0-9._-]{0,99}")
GTIN_LENGTHS = (8, 12, 13, 14)
PRICE_MAX = 2**31 - 1
PACK_MAX = 10_000_000
LEAD_DAYS_MAX = 90.0
CURRENCIES = frozenset(list_currencies())
# CSV import: one product a row, a header row naming the columns (any order).
CSV_COLUMNS = ("sku", "name", "brand", "pack_size", "unit", "currency", "price", "gtin",
               "image_url", "available", "lead_days")
CSV_REQUIRED = ("sku", "name", "pack_size", "unit", "currency", "price")
_TRUE, _FALSE = {"1", "true", "yes", "y"}, {"0", "false", "no", "n"}


# A product field is missing or out of bounds: HTTP 400 with the API's "BadRequest" code.
BadProduct = ReplenishError


def gtin_ok(gtin: str) -> bool:
    """GS1 check digit over 8, 12, 13 or 14 digits."""
    if not (gtin.isascii() and gtin.isdigit() and len(gtin) in GTIN_LENGTHS):
        return False
    digits = [int(c) for c in gtin]
    total = sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits[:-1])))
    return (10 - total % 10) % 10 == digits[-1]


def check(fields: dict) -> dict:
    """The checked fields of a product (those given), with words for what is wrong."""
    out = dict(fields)
    if "sku" in out and not SKU.fullmatch(out["sku"] or ""):
        raise BadProduct("sku must be 1-100 of A-Z, 0-9, '.', '_' or '-', starting with a "
                         "letter or digit")
    for name, longest in (("name", 200), ("brand", 100)):
        if name in out and out[name] is not None:
            out[name] = out[name].strip()
            if not out[name] and name == "name":
                raise BadProduct("name must not be empty")
            if len(out[name]) > longest:
                raise BadProduct(f"{name} must be at most {longest} characters")
            out[name] = out[name] or None
    if "unit" in out and out["unit"] not in display.UNITS:
        raise BadProduct(f"unit must be one of {list(display.UNITS)}")
    if "package_amount" in out and not 1 <= out["package_amount"] <= PACK_MAX:
        raise BadProduct(f"package_amount must be from 1 to {PACK_MAX}")
    if "currency" in out:
        out["currency"] = (out["currency"] or "").upper()
        if out["currency"] not in CURRENCIES:
            raise BadProduct("currency must be an ISO 4217 code such as EUR, USD, GBP, JPY")
    if "price_minor" in out and not 0 <= out["price_minor"] <= PRICE_MAX:
        raise BadProduct(f"price_minor must be from 0 to {PRICE_MAX}")
    if out.get("gtin") is not None:
        out["gtin"] = out["gtin"].strip() or None
        if out["gtin"] is not None and not gtin_ok(out["gtin"]):
            raise BadProduct("gtin must be 8, 12, 13 or 14 digits with a valid check digit")
    if out.get("image_url") is not None:
        out["image_url"] = out["image_url"].strip() or None
        if out["image_url"] and not out["image_url"].startswith(("https://", "http://")):
            raise BadProduct("image_url must be an http:// or https:// URL")
    if "default_lead_days" in out and not 0 <= out["default_lead_days"] <= LEAD_DAYS_MAX:
        raise BadProduct(f"default_lead_days must be from 0 to {LEAD_DAYS_MAX:g}")
    return out


_COLUMNS = {"price_minor": "price_cents"}  # the API's name -> the column's


def get(session: Session, sku: str) -> Product:
    product = session.get(Product, sku)
    if product is None:
        raise NotFound(f"no product {sku[:100]!r} in the catalogue")
    return product


def upsert(session: Session, fields: dict, *, create: bool = True) -> tuple[Product, bool]:
    """Create the product `fields["sku"]` or change the fields given. (product, created)."""
    fields = check(fields)
    if fields.get("gtin"):
        clash = session.scalars(select(Product.sku).where(
            Product.gtin == fields["gtin"], Product.sku != fields["sku"])).first()
        if clash is not None:
            raise BadProduct(f"gtin {fields['gtin']} is already product {clash}")
    product = session.get(Product, fields["sku"])
    created = product is None
    if created:
        if not create:
            raise NotFound(f"no product {fields['sku']!r} in the catalogue")
        missing = [n for n in ("name", "unit", "package_amount", "currency", "price_minor")
                   if n not in fields]
        if missing:
            raise BadProduct(f"a new product needs {', '.join(missing)}")
        product = Product(sku=fields["sku"], available=True, default_lead_days=3.0)
    for name, value in fields.items():
        if name != "sku":
            setattr(product, _COLUMNS.get(name, name), value)
    if created:
        session.add(product)
    product.updated_at = utcnow()
    log.info("catalogue: %s %s", "added" if created else "changed", product.sku)
    return product, created


def _csv_row(row: dict, line: int) -> dict:
    def value(name):
        text = (row.get(name) or "").strip()
        return text or None

    missing = [n for n in CSV_REQUIRED if value(n) is None]
    if missing:
        raise BadProduct(f"line {line}: {', '.join(missing)} missing")
    currency = value("currency").upper()
    if currency not in CURRENCIES:
        raise BadProduct(f"line {line}: currency must be an ISO 4217 code such as EUR")
    try:
        price = display.to_minor(Decimal(value("price")), currency)
        pack = int(value("pack_size"))
        lead = float(value("lead_days")) if value("lead_days") else None
    except (InvalidOperation, ValueError) as err:
        raise BadProduct(f"line {line}: price, pack_size and lead_days must be numbers "
                         f"(price like 37.98, in {currency}): {err}") from None
    fields = {"sku": value("sku"), "name": value("name"), "package_amount": pack,
              "unit": value("unit"), "currency": currency, "price_minor": price}
    # A column the file does not have leaves that field of a listed product as it is;
    # an empty cell in a column it has clears it.
    fields.update({name: value(name) for name in ("brand", "gtin", "image_url")
                   if name in row})
    if lead is not None:
        fields["default_lead_days"] = lead
    if value("available") is not None:
        flag = value("available").lower()
        if flag not in _TRUE | _FALSE:
            raise BadProduct(f"line {line}: available must be true or false")
        fields["available"] = flag in _TRUE
    try:
        return check(fields)
    except BadProduct as err:
        raise BadProduct(f"line {line}: {err}") from None


def import_csv(session: Session, text: str) -> tuple[int, int]:
    """Add or change every product in a CSV (header row: CSV_COLUMNS, any order; price
    as a decimal in the row's currency, e.g. 37.98). All or nothing: the first bad row
    raises BadProduct naming its line and nothing is written. (added, changed)."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip() for h in reader.fieldnames or []]
    unknown = sorted(set(header) - set(CSV_COLUMNS))
    if unknown or not set(CSV_REQUIRED) <= set(header):
        raise BadProduct(f"the header must name {', '.join(CSV_REQUIRED)} (and may name "
                         f"{', '.join(c for c in CSV_COLUMNS if c not in CSV_REQUIRED)})"
                         + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
    reader.fieldnames = header
    rows = [_csv_row(row, reader.line_num) for row in reader]
    seen: set[str] = set()
    for fields in rows:
        if fields["sku"] in seen:
            raise BadProduct(f"sku {fields['sku']} appears twice")
        seen.add(fields["sku"])
    added = changed = 0
    for fields in rows:
        _, created = upsert(session, fields)
        added, changed = added + created, changed + (not created)
        session.flush()  # a GTIN clash with a row above is seen by the next row
    return added, changed


@dataclass(frozen=True)
class MerchantUpdate:
    """What a merchant may change of a product: its price and whether it can be had."""

    sku: str
    price_minor: int | None = None
    currency: str | None = None
    available: bool | None = None


def apply_merchant_updates(session: Session, merchant: str,
                           updates: list[MerchantUpdate]) -> tuple[int, list[str]]:
    """Prices and availability from a merchant adapter. (changed, unknown SKUs): a
    merchant cannot add products, only price the ones operators listed."""
    changed, unknown = 0, []
    for update in updates:
        product = session.get(Product, update.sku)
        if product is None:
            unknown.append(update.sku)
            continue
        fields = {"sku": update.sku}
        if update.price_minor is not None:
            fields["price_minor"] = update.price_minor
        if update.currency is not None:
            fields["currency"] = update.currency
        if update.available is not None:
            fields["available"] = update.available
        upsert(session, fields, create=False)
        changed += 1
    log.info("catalogue: merchant %s changed %d products (%d unknown)", merchant, changed,
             len(unknown))
    return changed, unknown


def product_json(product: Product) -> dict:
    return {"sku": product.sku, "name": product.name, "brand": product.brand,
            "unit": product.unit, "package_amount": product.package_amount,
            "currency": product.currency, "price_minor": product.price_cents,
            "price_cents": product.price_cents, "gtin": product.gtin,
            "image_url": product.image_url, "available": product.available,
            "default_lead_days": product.default_lead_days}
