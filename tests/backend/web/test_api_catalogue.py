"""The catalogue and the household's locale over API v1, in-process on the real app, on
SQLite and PostgreSQL: operators add, change and import products (CSV, all or nothing);
households read them and see prices, amounts and orders in their own locale."""

from __future__ import annotations

import pytest

from backend.orders import catalogue, display
from tests import api_world
from tests.backend.web.test_api_v1 import assert_error, call


@pytest.fixture
def world(db_url, tmp_path) -> api_world.ApiWorld:
    return api_world.build(tmp_path, db_url)


TEA = {"sku": "TEA-GREEN-100", "name": "Green tea", "brand": "Leaf & Co", "unit": "pcs",
       "package_amount": 100, "currency": "eur", "price_minor": 499,
       "gtin": "4006381333931", "image_url": "https://img.example.org/tea.png"}


def products(world, token) -> dict:
    listed = call(world, "GET", "/products?limit=100", token).get_json()["products"]
    return {p["sku"]: p for p in listed}


def test_operators_add_and_change_products_households_read_them(world):
    ops = world.operator_token
    added = call(world, "POST", "/operator/products", ops, TEA)
    assert added.status_code == 201, added.get_json()
    assert added.get_json() == {**TEA, "currency": "EUR", "price_cents": 499,
                                "available": True, "default_lead_days": 3.0}
    assert_error(call(world, "POST", "/operator/products", ops, TEA), 409, "Conflict", "exists")
    changed = call(world, "PATCH", "/operator/products/TEA-GREEN-100", ops,
                   {"price_minor": 549, "available": False, "brand": None})
    assert changed.status_code == 200
    seen = products(world, world.owner.token)["TEA-GREEN-100"]
    assert (seen["price_minor"], seen["available"], seen["brand"]) == (549, False, None)
    assert products(world, world.owner.token)["COFFEE-BEANS-1KG"]["name"] == "Coffee beans"
    # Households and strangers cannot change it.
    assert_error(call(world, "PATCH", "/operator/products/TEA-GREEN-100", world.owner.token,
                      {"price_minor": 1}), 403, "Forbidden")
    assert_error(call(world, "PATCH", "/operator/products/NO-SUCH", ops, {"price_minor": 1}),
                 404, "NotFound")


@pytest.mark.parametrize("change, words", [
    ({"gtin": "4006381333932"}, "check digit"),
    ({"currency": "EURO"}, "currency"),
    ({"currency": "XYZ"}, "ISO 4217"),
    ({"sku": "tea lower"}, "sku"),
    ({"unit": "kg"}, "unit"),
    ({"price_minor": -1}, "price_minor"),
    ({"image_url": "javascript:alert(1)"}, "image_url"),
])
def test_bad_products_are_refused_with_words(world, change, words):
    assert_error(call(world, "POST", "/operator/products", world.operator_token,
                      {**TEA, **change}), 400, "BadRequest", words)
    assert "TEA-GREEN-100" not in products(world, world.owner.token)


def test_a_gtin_belongs_to_one_product(world):
    call(world, "POST", "/operator/products", world.operator_token, TEA)
    assert_error(call(world, "POST", "/operator/products", world.operator_token,
                      {**TEA, "sku": "TEA-OTHER"}), 400, "BadRequest", "already product")


CSV = """sku,name,brand,pack_size,unit,currency,price,gtin,available
COFFEE-BEANS-1KG,Coffee beans,Replenish Roasters,1000,g,EUR,18.99,,true
MATCHA-30G,Matcha,Leaf & Co,30,g,JPY,1200,,yes
OATS-500G,Rolled oats,,500,g,EUR,2.49,96385074,no
"""


def test_csv_import_adds_and_changes_all_or_nothing(world):
    ops = world.operator_token
    answer = call(world, "POST", "/operator/products/import", ops, {"csv": CSV})
    assert answer.status_code == 200 and answer.get_json() == {"added": 2, "changed": 1}
    seen = products(world, world.owner.token)
    assert (seen["MATCHA-30G"]["currency"], seen["MATCHA-30G"]["price_minor"]) == ("JPY", 1200)
    assert (seen["OATS-500G"]["price_minor"], seen["OATS-500G"]["available"]) == (249, False)
    assert seen["COFFEE-BEANS-1KG"]["price_minor"] == 1899

    bad = CSV.replace("OATS-500G,Rolled oats,,500,g,EUR,2.49", "OATS-1KG,Oats,,1000,g,JPY,2.49")
    bad = bad.replace("18.99", "21.00")
    assert_error(call(world, "POST", "/operator/products/import", ops, {"csv": bad}),
                 400, "BadRequest", "line 4")
    after = products(world, world.owner.token)
    assert "OATS-1KG" not in after and after["COFFEE-BEANS-1KG"]["price_minor"] == 1899
    assert_error(call(world, "POST", "/operator/products/import", ops,
                      {"csv": "sku,name\nX,Y\n"}), 400, "BadRequest", "header")
    assert_error(call(world, "POST", "/operator/products/import", world.owner.token,
                      {"csv": CSV}), 403, "Forbidden")


def test_orders_and_prices_read_in_the_households_locale(world):
    token = world.owner.token
    order_id = world.owner.order_ids[2]  # 2 x Laundry detergent 1 l at 8.99
    assert call(world, "GET", f"/orders/{order_id}", token).get_json()["line"] == (
        "2 × Laundry detergent 1 l · €17.98")
    changed = call(world, "PATCH", "/household", token,
                   {"locale": "de-DE", "timezone": "Europe/Berlin", "name": "Unsere WG"})
    assert changed.status_code == 200, changed.get_json()
    assert (changed.get_json()["locale"], changed.get_json()["timezone"]) == (
        "de_DE", "Europe/Berlin")
    assert call(world, "GET", f"/orders/{order_id}", token).get_json()["line"] == (
        "2 × Laundry detergent 1 l · 17,98\xa0€")
    assert_error(call(world, "PATCH", "/household", token, {"locale": "xx_NOPE"}),
                 400, "BadRequest", "locale")
    assert_error(call(world, "PATCH", "/household", token, {"timezone": "Mars/Olympus"}),
                 400, "BadRequest", "time zone")


def test_display_formats():
    assert display.money(3798, "EUR", "en") == "€37.98"
    assert display.money(1200, "JPY", "en") == "¥1,200"
    assert display.order_line(2, "Coffee beans", 1000, "g", 3798, "EUR", "en") == (
        "2 × Coffee beans 1 kg · €37.98")
    assert display.amount(640, "g", "de_DE") == "640 g"
    assert display.amount(1250, "ml", "de_DE") == "1,25 l"
    assert catalogue.gtin_ok("4006381333931") and not catalogue.gtin_ok("4006381333930")
