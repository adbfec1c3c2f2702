"""The operator's catalogue page and the household's settings for locale, time zone and
tolerance, on the real app and both databases (test client; the browser tests drive the
consent flow)."""

from __future__ import annotations

import io

import pytest

from backend.storage.models import Household, Product
from tests.web_helpers import (
    csrf,
    household_of,
    login,
    make_operator,
    register,
    text,
    web_app,
)


@pytest.fixture
def app(settings):
    yield from web_app(settings)


def test_operator_prices_adds_and_imports_products(app):
    ops = app.client()
    login(ops, make_operator(app))
    page = ops.get("/operator/catalogue")
    assert page.status_code == 200
    assert 'id="product-COFFEE-BEANS-1KG"' in text(page) and "1 kg" in text(page)
    token = csrf(ops, "/operator/catalogue")

    changed = ops.post("/operator/catalogue/DETERGENT-1L",
                       data={"price": "9,49", "csrf_token": token})  # unticked: unavailable
    assert changed.status_code == 302
    bad = ops.post("/operator/catalogue/DETERGENT-1L",
                   data={"price": "9.499", "available": "on", "csrf_token": token})
    assert bad.status_code == 400 and "an amount like 9.99 in EUR" in text(bad)
    added = ops.post("/operator/catalogue", data={
        "sku": "TEA-GREEN-100", "name": "Green tea", "brand": "Leaf & Co",
        "package_amount": "100", "unit": "pcs", "currency": "eur", "price": "4.99",
        "gtin": "4006381333931", "csrf_token": token})
    assert added.status_code == 302, text(added)
    sheet = b"sku,name,pack_size,unit,currency,price\nMATCHA-30G,Matcha,30,g,JPY,1200\n"
    imported = ops.post("/operator/catalogue/import", content_type="multipart/form-data",
                        data={"csrf_token": token,
                              "csv_file": (io.BytesIO(sheet), "products.csv")})
    assert imported.status_code == 302 and "1+added" in imported.headers["Location"]
    broken = ops.post("/operator/catalogue/import", content_type="multipart/form-data",
                      data={"csrf_token": token, "csv_file": (
                          io.BytesIO(b"sku,name,pack_size,unit,currency,price\nX,Y,1,kg,EUR,1\n"),
                          "bad.csv")})
    assert broken.status_code == 400 and "line 2" in text(broken)
    with app.sessions() as session:
        detergent = session.get(Product, "DETERGENT-1L")
        assert (detergent.price_cents, detergent.available) == (949, False)
        assert session.get(Product, "TEA-GREEN-100").price_cents == 499
        assert session.get(Product, "MATCHA-30G").currency == "JPY"
        assert session.get(Product, "X") is None
    assert "¥1,200" in text(ops.get("/operator/catalogue"))


def test_households_never_reach_the_catalogue_pages(app):
    member = app.client()
    register(member)
    token = csrf(member, "/devices")
    assert member.get("/operator/catalogue").status_code == 404
    assert member.post("/operator/catalogue/DETERGENT-1L",
                       data={"price": "0.01", "csrf_token": token}).status_code == 404
    assert member.post("/operator/catalogue", data={"csrf_token": token}).status_code == 404
    with app.sessions() as session:
        assert session.get(Product, "DETERGENT-1L").price_cents == 899


def test_household_settings_locale_zone_and_tolerance(app):
    member = app.client()
    email = register(member)
    token = csrf(member, "/settings")
    saved = member.post("/settings", data={
        "hold_window_min": "15", "max_orders_per_day": "5", "monthly_limit": "",
        "name": "Unsere WG", "price_tolerance_pct": "5", "locale": "de_DE",
        "timezone": "Europe/Berlin", "csrf_token": token})
    assert saved.status_code == 302, text(saved)
    with app.sessions() as session:
        household = session.get(Household, household_of(app, email))
        assert (household.name, household.locale, household.timezone,
                household.price_tolerance_pct) == ("Unsere WG", "de_DE", "Europe/Berlin", 5)
    refused = member.post("/settings", data={
        "hold_window_min": "15", "timezone": "Mars/Olympus", "csrf_token": token})
    assert refused.status_code == 400 and "unknown time zone" in text(refused)


# -- the device page: one form per slot, fitting the model; remove; revoked -------------

def test_device_page_forms_fit_the_model_and_a_device_can_be_removed(app):
    from sqlalchemy import select

    from backend.accounts import devices
    from backend.storage.models import Device, Notification
    from tests.web_helpers import claimed_device

    member = app.client()
    email = register(member)
    hid = household_of(app, email)
    button = claimed_device(app, hid)
    scale = claimed_device(app, hid, model="scale")
    page = text(member.get(f"/devices/{button}"))
    assert 'name="kind" value="button"' in page and 'name="min_level"' not in page
    page = text(member.get(f"/devices/{scale}"))
    assert 'name="kind" value="sensor"' in page and 'name="min_level"' in page
    assert 'placeholder="Kitchen scale"' in page
    token = csrf(member, f"/devices/{scale}")
    for index, sku in ((0, "COFFEE-BEANS-1KG|1899"), (1, "DETERGENT-1L|899")):
        saved = member.post(f"/devices/{scale}/slots", data={
            "slot": str(index), "product_sku": sku, "quantity": "1", "kind": "sensor",
            "safety_days": "2", "min_level": "200", "target_level": "", "csrf_token": token})
        assert saved.status_code == 302, text(saved)
    page = text(member.get(f"/devices/{scale}"))
    assert page.count('<form method="post" action="/devices/' + scale + '/slots"') == 2
    assert "Slot 1" in page and "orders below 200 g" in page
    # Each slot's floor and refill fields name its product's unit.
    assert "Order when below (g, empty: only the forecast)" in page
    assert "Order when below (ml, empty: only the forecast)" in page
    assert "Refill up to (ml, empty: the packs above)" in page
    # A price changed since the page was shown: nothing is saved, the page says so.
    stale = member.post(f"/devices/{scale}/slots", data={
        "slot": "0", "product_sku": "COFFEE-BEANS-1KG|1799", "quantity": "1",
        "kind": "sensor", "csrf_token": token})
    assert stale.status_code == 409 and "show the household the new price" in text(stale)

    refused = member.post(f"/devices/{scale}/remove", data={"csrf_token": token})
    assert refused.status_code == 400 and "tick the box" in text(refused)
    removed = member.post(f"/devices/{scale}/remove",
                          data={"confirm": "on", "csrf_token": token})
    assert removed.status_code == 302 and "removed=" in removed.headers["Location"]
    assert member.get(f"/devices/{scale}").status_code == 404

    with app.writer() as session, session.begin():
        devices.revoke(session, session.scalars(
            select(Device).where(Device.device_id == button)).one())
    page = text(member.get(f"/devices/{button}"))
    assert "Revoked by the manufacturer" in page and 'name="product_sku"' not in page
    assert member.post(f"/devices/{button}/slots", data={
        "slot": "0", "product_sku": "DETERGENT-1L|899", "quantity": "1",
        "csrf_token": token}).status_code == 400
    assert "revoked" in text(member.get("/devices"))
    with app.sessions() as session:
        kinds = list(session.scalars(select(Notification.kind)
                                     .where(Notification.household_id == hid)))
        assert kinds == ["device_revoked"]
