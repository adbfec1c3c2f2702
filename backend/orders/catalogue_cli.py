"""`replenish catalogue`: the operator's catalogue from the command line (list, add,
set, import CSV). The same service as the API (backend/orders/catalogue.py)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path

import click
from sqlalchemy import select

from backend.errors import ReplenishError
from backend.orders import catalogue, display
from backend.storage import db
from backend.storage.models import Product


@click.group("catalogue")
def catalogue_group():
    """Products households can choose: name, brand, pack, price, GTIN, availability."""


@catalogue_group.command("list")
@click.pass_obj
def catalogue_list(settings):
    """Every product, one a line: SKU, label, price, availability."""
    with db.transaction(settings.db_url) as session:
        for product in session.scalars(select(Product).order_by(Product.sku)):
            label = display.product_label(product.name, product.package_amount,
                                          product.unit, brand=product.brand)
            click.echo(f"{product.sku}\t{label}\t"
                       f"{display.money(product.price_cents, product.currency)}\t"
                       f"{'available' if product.available else 'unavailable'}"
                       f"{chr(9) + product.gtin if product.gtin else ''}")


def _price(text: str | None, currency: str) -> int | None:
    if text is None:
        return None
    try:
        return display.to_minor(Decimal(text), currency)
    except (InvalidOperation, ValueError) as err:
        raise ReplenishError(f"price must be an amount like 37.98 in {currency}: {err}") \
            from None


@catalogue_group.command("add")
@click.argument("sku")
@click.option("--name", required=True, help="Without the pack size: 'Coffee beans'.")
@click.option("--brand")
@click.option("--pack-size", "package_amount", type=click.IntRange(1, catalogue.PACK_MAX),
              required=True, help="Units per pack, e.g. 1000 for 1 kg in g.")
@click.option("--unit", type=click.Choice(display.UNITS), required=True)
@click.option("--currency", default="EUR", show_default=True, help="ISO 4217 code.")
@click.option("--price", required=True, help="Per pack, as a decimal: 37.98.")
@click.option("--gtin")
@click.option("--image-url")
@click.pass_obj
def catalogue_add(settings, sku, price, currency, **fields):
    """Add a product."""
    currency = currency.upper()
    with db.transaction(settings.db_url) as session:
        if session.get(Product, sku) is not None:
            raise ReplenishError(f"product {sku} exists; use `replenish catalogue set`")
        product, _ = catalogue.upsert(session, {
            "sku": sku, "currency": currency, "price_minor": _price(price, currency),
            **{k: v for k, v in fields.items() if v is not None}})
        click.echo(f"added {product.sku}")


@catalogue_group.command("set")
@click.argument("sku")
@click.option("--name")
@click.option("--brand")
@click.option("--price", help="Per pack, as a decimal in the product's currency.")
@click.option("--available/--unavailable", default=None)
@click.pass_obj
def catalogue_set(settings, sku, price, **fields):
    """Change a product's name, brand, price or availability. Orders already made keep
    their price; presses above a slot's confirmed price wait for the household."""
    with db.transaction(settings.db_url) as session:
        product = catalogue.get(session, sku)
        changes = {k: v for k, v in fields.items() if v is not None}
        if price is not None:
            changes["price_minor"] = _price(price, product.currency)
        catalogue.upsert(session, {"sku": sku, **changes}, create=False)
        click.echo(f"changed {sku}: {', '.join(sorted(changes)) or 'nothing'}")


@catalogue_group.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def catalogue_import(settings, csv_file: Path):
    """Add or change products from a CSV file (all or nothing). Header row, any order:
    sku,name,brand,pack_size,unit,currency,price,gtin,image_url,available,lead_days."""
    with db.transaction(settings.db_url) as session:
        added, changed = catalogue.import_csv(session, csv_file.read_text(encoding="utf-8"))
    click.echo(f"imported {csv_file.name}: {added} added, {changed} changed")
