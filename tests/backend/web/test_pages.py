"""The household and operator pages through Flask's test client, on SQLite and
PostgreSQL: sessions and cookies, CSRF, log-in messages and lockout, claiming (typed and
QR), slots, settings, orders and cancel, pagination, operator pages."""

from __future__ import annotations

import contextlib
import logging
import re
from datetime import timedelta

import flask
import pytest
from sqlalchemy import func, select

from backend.accounts import users as accounts
from backend.orders import notifications
from backend.storage.db import utcnow
from backend.storage.models import (
    AuthThrottle,
    Device,
    Household,
    Notification,
    Order,
    Slot,
    User,
    WebSession,
)
from tests.web_helpers import (
    PASSWORD,
    App,
    add_device,
    claimed_device,
    count,
    csrf,
    household_of,
    login,
    make_operator,
    new_order,
    register,
    text,
    web_app,
)


@pytest.fixture
def app(settings):
    yield from web_app(settings)


# -- accounts and sessions -----------------------------------------------------------

def test_register_logs_in_with_a_safe_cookie_and_headers(app):
    client = app.client()
    response = client.get("/login")
    for name, value in {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
                        "Referrer-Policy": "no-referrer"}.items():
        assert response.headers[name] == value
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    register(client, "ann@example.org")
    cookie = client.get_cookie("replenish_session")
    assert cookie.http_only and cookie.same_site == "Lax" and not cookie.secure
    page = client.get("/devices")
    assert page.status_code == 200 and "Log out" in text(page)
    assert page.headers["Cache-Control"] == "no-store"
    assert "/operator" not in text(page)  # households never see operator links


def test_cookie_is_secure_over_https(app):
    client = app.client()
    response = client.get("/login", base_url="https://localhost")
    assert "Secure" in response.headers["Set-Cookie"]
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert "Strict-Transport-Security" not in client.get("/login").headers


def test_login_makes_a_new_session_and_logout_ends_it(app):
    client = app.client()
    email = register(client)
    client.post("/logout", data={"csrf_token": csrf(client, "/devices")})
    client.get("/login")  # an anonymous session (it holds the CSRF token)
    before = client.get_cookie("replenish_session").value
    assert login(client, email).status_code == 302
    after = client.get_cookie("replenish_session").value
    assert after != before
    with app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(WebSession)) == 1

    # A copy of the cookie stops working once its owner logs out.
    thief = app.client()
    thief.set_cookie("replenish_session", after)
    assert thief.get("/devices").status_code == 200
    assert client.post("/logout", data={"csrf_token": csrf(client, "/devices")}).status_code == 302
    assert thief.get("/devices").headers["Location"].endswith("/login")
    with app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(WebSession)) == 0


def test_wrong_password_and_unknown_email_say_the_same(app):
    client = app.client()
    email = register(client)
    client = app.client()
    wrong = login(client, email, "not the password")
    unknown = login(client, "nobody@example.org", PASSWORD)
    assert wrong.status_code == unknown.status_code == 401
    assert "wrong email or password" in text(wrong) and "wrong email or password" in text(unknown)
    assert client.get("/devices").status_code == 302  # still logged out


def test_register_says_what_is_wrong_and_creates_nothing(app):
    client = app.client()
    cases = [({"email": "nope", "password": PASSWORD, "password_again": PASSWORD},
              "does not look like an email"),
             ({"email": "a@example.org", "password": "short", "password_again": "short"},
              "at least 10 characters"),
             ({"email": "a@example.org", "password": PASSWORD, "password_again": "other one!!"},
              "the two passwords differ")]
    for data, words in cases:
        response = client.post("/register", data={**data, "household_name": "Flat",
                                                   "csrf_token": csrf(client, "/register")})
        assert response.status_code == 400 and words in text(response)
    register(client, "taken@example.org")
    other = app.client()
    response = other.post("/register", data={
        "email": "TAKEN@example.org", "password": PASSWORD, "password_again": PASSWORD,
        "household_name": "Flat", "csrf_token": csrf(other, "/register")})
    assert response.status_code == 409 and "exists already" in text(response)
    assert count(app, User) == 1 and count(app, Household) == 1


def test_login_lockout_after_five_failures(app):
    client = app.client()
    email = register(client)
    client = app.client()
    for _ in range(accounts.MAX_FAILURES):
        assert login(client, email, "wrong password!").status_code == 401
    locked = login(client, email, PASSWORD)
    assert locked.status_code == 429 and "try again after" in text(locked)
    assert 0 < int(locked.headers["Retry-After"]) <= 15 * 60
    assert client.get("/devices").status_code == 302


def test_secrets_stay_out_of_logs_and_the_secret_file_is_owner_only(app, settings, caplog):
    caplog.set_level(logging.DEBUG)
    client = app.client()
    email = register(client)
    login(app.client(), email, "a wrong password")
    with app.writer() as session, session.begin():
        _, code = add_device(session)
    client.post("/devices/claim", data={"code": code,
                                        "csrf_token": csrf(client, "/devices/claim")})
    key_file = settings.data_dir / "web-secret.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    logged = caplog.text
    for secret in (PASSWORD, "a wrong password", code, key_file.read_text().strip(),
                   client.get_cookie("replenish_session").value):
        assert secret not in logged


# -- CSRF ------------------------------------------------------------------------------

def test_forms_without_csrf_token_are_refused_and_change_nothing(app):
    client = app.client()
    register(client)
    with app.sessions() as session:
        hid = session.scalars(select(User)).one().household_id
    device_id = claimed_device(app, hid)
    with app.writer() as session, session.begin():
        _, code = add_device(session)
    order_id = new_order(app, hid, device_id)
    waiting_id = new_order(app, hid, device_id, unit_price_cents=899, total_cents=899,
                           currency="EUR", confirmed_price_minor=799,
                           consent_reason="price_increased")
    attempts = [
        ("/devices/claim", {"code": code}),
        (f"/devices/{device_id}/name", {"name": "Hacked"}),
        (f"/devices/{device_id}/slots", {"slot": "0", "product_sku": "DETERGENT-1L",
                                         "quantity": "3"}),
        ("/settings", {"hold_window_min": "0"}),
        (f"/orders/{order_id}/cancel", {}),
        (f"/orders/{waiting_id}/confirm", {"unit_price_minor": "899"}),
        (f"/orders/{waiting_id}/decline", {}),
        ("/logout", {}),
        ("/register", {"email": "x@example.org", "password": PASSWORD,
                       "password_again": PASSWORD, "household_name": "X"}),
    ]
    for path, data in attempts:
        for token in (None, "forged-token", "ünïcode"):
            sent = data if token is None else {**data, "csrf_token": token}
            response = client.post(path, data=sent)
            assert response.status_code == 400, path
            assert "did not come from this site" in text(response)
    with app.sessions() as session:
        assert session.get(Order, order_id).state == "pending"
        assert session.get(Order, waiting_id).state == "awaiting_consent"
        device = session.scalars(select(Device).where(Device.device_id == device_id)).one()
        assert device.name is None and device.slots == []
        assert session.get(Household, hid).hold_window_s == 900
        assert session.scalar(select(func.count()).select_from(Device)
                              .where(Device.household_id == hid)) == 1
        assert session.scalar(select(func.count()).select_from(User)) == 1
    assert client.get("/devices").status_code == 200  # still logged in


def test_api_is_not_subject_to_csrf(app):
    client = app.client()
    response = client.post("/api/v1/orders/1/cancel")
    assert response.status_code == 401  # bearer auth decides, not a form token


# -- claiming ----------------------------------------------------------------------

def test_claim_by_typing_the_code(app):
    client = app.client()
    email = register(client)
    with app.writer() as session, session.begin():
        device_id, code = add_device(session)
    typed = code.lower().replace("-", " ")  # case and dashes do not matter
    response = client.post("/devices/claim", data={"code": typed,
                                                   "csrf_token": csrf(client, "/devices/claim")})
    assert response.status_code == 302
    assert response.headers["Location"].startswith(f"/devices/{device_id}")
    with app.sessions() as session:
        device = session.scalars(select(Device).where(Device.device_id == device_id)).one()
        assert device.household_id == household_of(app, email)
    again = client.post("/devices/claim", data={"code": code,
                                                "csrf_token": csrf(client, "/devices/claim")})
    assert again.status_code == 409 and "already claimed" in text(again)


def test_claim_from_the_qr_url_goes_through_login(app):
    client = app.client()
    email = register(client)
    client.post("/logout", data={"csrf_token": csrf(client, "/devices")})
    with app.writer() as session, session.begin():
        device_id, code = add_device(session)
    first = client.get(f"/claim/{code}")
    assert first.status_code == 302 and first.headers["Location"].endswith("/login")
    back = login(client, email)
    assert back.headers["Location"] == f"/claim/{code}"
    page = client.get(f"/claim/{code}")
    assert page.status_code == 200 and f'value="{code}"' in text(page)
    with app.sessions() as session:  # opening the link alone changes nothing
        assert session.scalars(select(Device.household_id)
                               .where(Device.device_id == device_id)).one() is None
    done = client.post("/devices/claim", data={"code": code,
                                               "csrf_token": csrf(client, f"/claim/{code}")})
    assert done.status_code == 302
    with app.sessions() as session:
        assert session.scalars(select(Device.household_id)
                               .where(Device.device_id == device_id)).one() is not None


def test_login_does_not_redirect_off_site(app):
    client = app.client()
    email = register(client)
    client.post("/logout", data={"csrf_token": csrf(client, "/devices")})
    client.get("//evil.example/claim/x")  # no such page: nothing remembered
    assert login(client, email).headers["Location"] == "/devices"


def test_wrong_claim_codes_lock_out_the_household(app):
    client = app.client()
    register(client)
    from backend.accounts import claim_codes

    for n in range(accounts.MAX_FAILURES):
        code = "0000" if n == 0 else claim_codes.generate()  # a typo and valid guesses
        response = client.post("/devices/claim", data={
            "code": code, "csrf_token": csrf(client, "/devices/claim")})
        assert response.status_code in (400, 404)
    with app.writer() as session, session.begin():
        _, real = add_device(session)
    locked = client.post("/devices/claim", data={"code": real,
                                                 "csrf_token": csrf(client, "/devices/claim")})
    assert locked.status_code == 429 and "try again after" in text(locked)
    with app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Device)
                              .where(Device.household_id.is_not(None))) == 0


# -- devices, slots, settings -------------------------------------------------------

def test_device_list_shows_state_and_warnings(app):
    client = app.client()
    email = register(client)
    hid = household_of(app, email)
    fresh = claimed_device(app, hid, last_seen_at=utcnow(), battery_mv=3100, fw="1.2.3")
    tired = claimed_device(app, hid, last_seen_at=utcnow() - timedelta(days=3),
                           battery_mv=2100)
    new = claimed_device(app, hid, battery_mv=None, fw=None)
    page = text(client.get("/devices"))
    fresh_card, tired_card, new_card = (page.split(f'id="device-{d}"')[1].split("</li>")[0]
                                        for d in (fresh, tired, new))
    assert "1.2.3" in fresh_card and "3100 mV" in fresh_card
    assert "Offline" not in fresh_card and "Low battery" not in fresh_card
    assert "Offline" in tired_card and "Low battery (2100 mV)" in tired_card
    assert "Not heard from yet" in new_card and "Offline" not in new_card
    assert "Not heard from yet" not in fresh_card + tired_card


def test_rename_and_configure_a_slot(app):
    client = app.client()
    email = register(client)
    device_id = claimed_device(app, household_of(app, email))
    page = f"/devices/{device_id}"
    assert client.post(f"{page}/name", data={"name": "Kitchen",
                                              "csrf_token": csrf(client, page)}).status_code == 302
    form = {"slot": "0", "product_sku": "DETERGENT-1L", "quantity": "3", "kind": "button",
            "safety_days": "2"}
    assert client.post(f"{page}/slots", data={**form, "csrf_token": csrf(client, page)}
                       ).status_code == 302
    for bad, words in [({"quantity": "0"}, "quantity must be a whole number"),
                       ({"quantity": "lots"}, "quantity must be a whole number"),
                       ({"product_sku": "NOPE"}, "choose a product from the list"),
                       ({"kind": "lever"}, "choose button or sensor"),
                       ({"safety_days": "nan"}, "safety stock")]:
        response = client.post(f"{page}/slots", data={**form, **bad,
                                                      "csrf_token": csrf(client, page)})
        assert response.status_code == 400 and words in text(response)
    with app.sessions() as session:
        device = session.scalars(select(Device).where(Device.device_id == device_id)).one()
        assert device.name == "Kitchen"
        assert [(s.product_sku, s.quantity, s.kind) for s in device.slots] == [
            ("DETERGENT-1L", 3, "button")]
    assert "Kitchen" in text(client.get("/devices"))


def test_settings_save_and_refuse_in_words(app):
    client = app.client()
    email = register(client)
    hid = household_of(app, email)
    form = {"hold_window_min": "5", "allow_multiple_open": "on", "max_orders_per_day": "",
            "monthly_limit": "39.90"}
    assert client.post("/settings", data={**form, "csrf_token": csrf(client, "/settings")}
                       ).status_code == 302
    with app.sessions() as session:
        h = session.get(Household, hid)
        assert (h.hold_window_s, h.allow_multiple_open, h.max_orders_per_day,
                h.monthly_limit_cents) == (300, True, None, 3990)
    for bad, words in [({"hold_window_min": "-1"}, "hold window"),
                       ({"hold_window_min": "99999"}, "hold window"),
                       ({"max_orders_per_day": "two"}, "daily order limit"),
                       ({"monthly_limit": "12.345"}, "monthly limit"),
                       ({"monthly_limit": "inf"}, "monthly limit")]:
        response = client.post("/settings", data={**form, **bad,
                                                  "csrf_token": csrf(client, "/settings")})
        assert response.status_code == 400 and words in text(response)
    with app.sessions() as session:
        assert session.get(Household, hid).hold_window_s == 300
    page = text(client.get("/settings"))
    assert 'value="5"' in page and 'value="39.90"' in page and "checked" in page


# -- orders ----------------------------------------------------------------------------

def test_order_timeline_and_cancel(app):
    client = app.client()
    email = register(client)
    hid = household_of(app, email)
    device_id = claimed_device(app, hid)
    order_id = new_order(app, hid, device_id)
    listing = text(client.get("/orders"))
    assert f"Cancel order {order_id}" in listing
    response = client.post(f"/orders/{order_id}/cancel",
                           data={"csrf_token": csrf(client, "/orders")})
    assert response.status_code == 302
    page = text(client.get(f"/orders/{order_id}"))
    timeline = page.split('class="timeline"')[1]
    assert timeline.index("pending") < timeline.index("cancelled")
    assert f"Cancel order {order_id}" not in page
    again = client.post(f"/orders/{order_id}/cancel",
                        data={"csrf_token": csrf(client, "/orders")})
    assert again.status_code == 409 and "only be cancelled while pending" in text(again)
    notes = text(client.get("/notifications"))
    assert "was cancelled" in notes and 'aria-label="1 unread"' in notes
    assert client.post("/notifications/read").status_code == 400  # no CSRF token
    assert client.post("/notifications/read", data={
        "csrf_token": csrf(client, "/notifications")}).status_code == 302
    assert "unread" not in text(client.get("/notifications"))
    with app.sessions() as session:
        assert session.scalars(select(Notification.read_at)).one() is not None


def test_long_lists_paginate(app):
    client = app.client()
    email = register(client)
    hid = household_of(app, email)
    device_id = claimed_device(app, hid)
    ids = [new_order(app, hid, device_id, hold_window_s=0) for _ in range(23)]
    first, second = text(client.get("/orders")), text(client.get("/orders?page=2"))
    on_first = set(map(int, re.findall(r'id="order-(\d+)"', first)))
    on_second = set(map(int, re.findall(r'id="order-(\d+)"', second)))
    assert len(on_first) == 20 and len(on_second) == 3
    assert on_first | on_second == set(ids) and "page 1 of 2" in first
    assert 'rel="next"' in first and 'rel="prev"' in second
    assert client.get("/orders?page=x").status_code == 400
    assert len(re.findall(r'class="notification', text(client.get("/notifications")))) == 20


# -- isolation --------------------------------------------------------------------------

def test_a_household_cannot_touch_another_households_things(app):
    owner, stranger = app.client(), app.client()
    owner_email = register(owner, "owner@example.org")
    register(stranger, "stranger@example.org")
    hid = household_of(app, owner_email)
    device_id = claimed_device(app, hid)
    with app.writer() as session, session.begin():
        device = session.scalars(select(Device).where(Device.device_id == device_id)).one()
        session.add(Slot(device_pk=device.id, index=0, product_sku="DETERGENT-1L",
                         quantity=1, kind="sensor"))
    order_id = new_order(app, hid, device_id)
    waiting_id = new_order(app, hid, device_id, unit_price_cents=899, total_cents=899,
                           currency="EUR", confirmed_price_minor=799,
                           consent_reason="price_increased")
    with app.writer() as session, session.begin():
        notifications.notify(session, hid, "test", "For the owner only")
    token = csrf(stranger, "/devices")
    with routes_answered(app, 404) as refused:
        for path in (f"/devices/{device_id}", f"/devices/{device_id}/slots/0",
                     f"/orders/{order_id}"):
            assert stranger.get(path).status_code == 404, path
            assert owner.get(path).status_code == 200, path
        for path, data in [(f"/devices/{device_id}/name", {"name": "Mine now"}),
                           (f"/devices/{device_id}/slots", {"slot": "0", "quantity": "9",
                                                            "product_sku": "DETERGENT-1L"}),
                           (f"/orders/{order_id}/cancel", {}),
                           (f"/orders/{waiting_id}/confirm", {"unit_price_minor": "899"}),
                           (f"/orders/{waiting_id}/decline", {}),
                           (f"/devices/{device_id}/remove", {"confirm": "on"}),
                           (f"/operator/devices/{device_id}/revoke", {"reason": "mine now"}),
                           ("/operator/releases/1/pause", {}),
                           ("/operator/releases/1/resume", {"percent": "5"}),
                           ("/operator/catalogue/DETERGENT-1L", {"price": "0.01"})]:
            answer = stranger.post(path, data={**data, "csrf_token": token})
            assert answer.status_code == 404, path
    # Every id route of the route map was aimed at (a new one fails here until it is).
    assert id_routes(app) - set(ISOLATED_ELSEWHERE) - refused == set()
    stranger.post("/notifications/read", data={"csrf_token": token})  # marks only its own
    listing = text(stranger.get("/orders")) + text(stranger.get("/devices"))
    listing += text(stranger.get("/notifications"))
    assert device_id not in listing and f"order-{order_id}" not in listing
    with app.sessions() as session:
        assert session.get(Order, order_id).state == "pending"
        assert session.get(Order, waiting_id).state == "awaiting_consent"
        device = session.scalars(select(Device).where(Device.device_id == device_id)).one()
        assert device.name is None and device.slots[0].quantity == 1
        assert set(session.scalars(select(Notification.read_at))) == {None}  # all unread
    assert "For the owner only" not in listing
    # Operator pages: a household gets 404, for reading and for revoking.
    for path in ("/operator/fleet", "/operator/batches", "/operator/releases",
                 f"/operator/devices/{device_id}/revoke"):
        assert stranger.get(path).status_code == 404
    with app.sessions() as session:
        assert session.scalars(select(Device.status)
                               .where(Device.device_id == device_id)).one() == "active"


def id_routes(app) -> set[str]:
    """Every page route that takes an id (or a code), from the app's route map."""
    return {rule.rule for rule in app.flask.url_map.iter_rules()
            if rule.endpoint.startswith("pages.") and rule.arguments}


# Page id routes whose isolation is tested elsewhere than in the test above, and where.
ISOLATED_ELSEWHERE = {
    "/claim/<code>": "test_claim_from_the_qr_url_goes_through_login",
    "/account/tokens/<int(max=2147483647):token_id>/revoke":
        "test_api_tokens_page_lists_and_revokes_only_ones_own",
}


@contextlib.contextmanager
def routes_answered(app, status: int):
    """The rules of the requests the app answered with `status` meanwhile."""
    seen: set[str] = set()

    def record(_sender, response, **_extra):
        if flask.request.url_rule is not None and response.status_code == status:
            seen.add(flask.request.url_rule.rule)

    flask.request_finished.connect(record, app.flask)
    try:
        yield seen
    finally:
        flask.request_finished.disconnect(record, app.flask)


def test_every_page_route_with_an_id_has_an_isolation_test(app):
    assert set(ISOLATED_ELSEWHERE) <= id_routes(app)
    assert all(name in globals() for name in ISOLATED_ELSEWHERE.values())


def test_operator_cannot_use_household_pages(app):
    operator = app.client()
    login(operator, make_operator(app))
    for path in ("/devices", "/orders", "/settings", "/notifications"):
        assert operator.get(path).status_code == 404


# -- operator ---------------------------------------------------------------------------

def test_operator_fleet_filters_batches_and_revoke(app):
    with app.writer() as session, session.begin():
        old = add_device(session, model="button", fw="1.0.0", battery_mv=2000,
                         last_seen_at=utcnow() - timedelta(days=10))[0]
        new = add_device(session, model="sensor", fw="1.1.0", battery_mv=3200,
                         last_seen_at=utcnow())[0]
        never = add_device(session, model="button", fw=None, battery_mv=None)[0]
    operator = app.client()
    assert login(operator, make_operator(app)).headers["Location"] == "/operator/fleet"

    def shown(query: str) -> set[str]:
        page = operator.get(f"/operator/fleet?{query}")
        assert page.status_code == 200
        return set(re.findall(r'<tr id="device-([0-9a-f]+)"', text(page)))

    assert shown("") == {old, new, never}
    assert shown("model=sensor") == {new}
    assert shown("firmware=1.0.0") == {old}
    assert shown("battery_below=2500") == {old}
    yesterday = (utcnow() - timedelta(days=1)).date().isoformat()
    assert shown(f"seen_before={yesterday}") == {old, never}
    assert shown(f"seen_after={yesterday}") == {new}
    bad = operator.get("/operator/fleet?seen_before=yesterday")
    assert bad.status_code == 400 and "must be a date" in text(bad)
    batches = text(operator.get("/operator/batches"))
    assert "web-test" in batches

    # Search: a serial or a device id, whole or its start (LIKE's wildcards are text).
    with app.sessions() as session:
        serial = session.scalars(select(Device.serial).where(Device.device_id == new)).one()
    assert shown(f"q={serial.lower()}") == {new}
    assert shown(f"q={new[:6]}") == {new}
    assert shown("q=%25") == set() and shown("q=_") == set()
    with app.sessions() as session:
        batch_id = session.scalars(select(Device.batch_id).where(Device.device_id == old)).one()
    form = text(operator.get(f"/operator/fleet?batch={batch_id}"))
    assert f'<option value="{batch_id}" selected>' in form  # the filter shows in its form

    # Revoke: a list row only links to a page that asks for a reason.
    assert f'action="/operator/devices/{old}/revoke"' not in text(operator.get("/operator/fleet"))
    asking = text(operator.get(f"/operator/devices/{old}/revoke"))
    assert "Why is it revoked?" in asking and "replenish provision" in asking
    refused = operator.post(f"/operator/devices/{old}/revoke", data={"reason": "stolen"})
    assert refused.status_code == 400  # no CSRF token
    token = csrf(operator, f"/operator/devices/{old}/revoke")
    no_reason = operator.post(f"/operator/devices/{old}/revoke",
                              data={"csrf_token": token, "reason": " "})
    assert no_reason.status_code == 400 and "say why" in text(no_reason)
    assert shown("status=revoked") == set()
    done = operator.post(f"/operator/devices/{old}/revoke",
                         data={"csrf_token": token, "reason": "reported stolen"})
    assert done.status_code == 302
    assert shown("status=revoked") == {old}
    assert "revoked: reported stolen" in text(operator.get("/operator/fleet?status=revoked"))
    missing = operator.post("/operator/devices/ffffffffffffffff/revoke",
                            data={"csrf_token": token, "reason": "gone"})
    assert missing.status_code == 404


def test_operator_fleet_paginates(app):
    with app.writer() as session, session.begin():
        made = {add_device(session)[0] for _ in range(25)}
    operator = app.client()
    login(operator, make_operator(app))
    seen = set()
    for number in (1, 2):
        page = text(operator.get(f"/operator/fleet?model=button&page={number}"))
        seen |= set(re.findall(r'<tr id="device-([0-9a-f]+)"', page))
    assert seen == made


# -- deployment settings ---------------------------------------------------------------

def test_expired_session_sends_back_to_login(app):
    client = app.client()
    register(client)
    with app.writer() as session, session.begin():
        for row in session.scalars(select(WebSession)):
            row.expires_at = utcnow() - timedelta(seconds=1)
    assert client.get("/devices").headers["Location"].endswith("/login")


def test_behind_a_proxy_the_cookie_follows_its_https_and_client_address(settings):
    proxied = App(settings.with_(behind_proxy=True, web_secret_key="k" * 64))
    try:
        client = proxied.client()
        headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "127.0.0.9"}
        response = client.get("/login", headers=headers)
        assert "Secure" in response.headers["Set-Cookie"]
        email = register(client)
        for _ in range(accounts.MAX_FAILURES):
            attacker = proxied.client()
            attacker.environ_base["HTTP_X_FORWARDED_FOR"] = "127.0.0.9"
            login(attacker, email, "wrong password!")
        with proxied.sessions() as session:  # counted against the forwarded address
            assert session.get(AuthThrottle, "login-from:127.0.0.9").failures == 5
            assert session.get(AuthThrottle, "login-from:127.0.0.1") is None
        assert not (settings.data_dir / "web-secret.key").exists()  # the key came from env
    finally:
        proxied.close()


def test_secret_key_file_readable_by_others_is_refused(settings):
    from backend.errors import ConfigError
    from backend.web.security import SECRET_FILE, secret_key

    path = settings.data_dir / SECRET_FILE
    assert secret_key(settings) == secret_key(settings)  # created once, then read
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="owner only"):
        secret_key(settings)


def test_settings_read_the_web_variables():
    from backend.config import Settings

    loaded = Settings.from_env({"REPLENISH_SECRET_KEY": "s" * 40,
                                "REPLENISH_BEHIND_PROXY": "true"})
    assert loaded.web_secret_key == "s" * 40 and loaded.behind_proxy
    assert "s" * 40 not in repr(loaded)
    assert not Settings.from_env({}).behind_proxy


def test_odd_input_is_refused_in_words_never_a_server_error(app):
    client = app.client()
    email = register(client)
    device_id = claimed_device(app, household_of(app, email))
    token = csrf(client, "/devices")
    odd = [
        ("get", "/orders/99999999999999999999", {}, 404),
        ("get", f"/devices/{device_id}/slots/99999", {}, 404),
        ("get", "/devices/%00abc", {}, 400),
        ("get", "/orders?page=%C2%B2", {}, 400),  # '²' is a digit to str.isdigit
        ("get", "/orders?page=99999999999", {}, 200),  # the last page
        ("post", f"/devices/{device_id}/slots", {"quantity": "²", "product_sku": "DETERGENT-1L"},
         400),
        ("post", f"/devices/{device_id}/name", {"name": "Kitchen\x00"}, 400),
        ("post", f"/devices/{device_id}/name", {"name": "Kitchen\x07"}, 400),
        ("post", "/settings", {"hold_window_min": "٣"}, 400),
        ("post", "/devices/claim", {"code": "\x00" * 13}, 400),
    ]
    for method, path, data, status in odd:
        if method == "get":
            response = client.get(path)
        else:
            response = client.post(path, data={**data, "csrf_token": token})
        assert response.status_code == status, (path, data, text(response)[-300:])
    with app.sessions() as session:
        assert session.scalars(select(Device.name)).one() is None
    fresh = app.client()
    response = fresh.post("/register", data={
        "email": "a\x01b@example.org", "password": PASSWORD, "password_again": PASSWORD,
        "household_name": "Flat", "csrf_token": csrf(fresh, "/register")})
    assert response.status_code == 400 and "email" in text(response)


def test_a_user_changes_their_password_on_a_page(app):
    browser, elsewhere = app.client(), app.client()
    email = register(browser)
    login(elsewhere, email)
    assert elsewhere.get("/devices").status_code == 200
    wrong = browser.post("/account/password", data={
        "current_password": "not it at all", "new_password": "a new passphrase",
        "new_password_again": "a new passphrase", "csrf_token": csrf(browser, "/account/password")})
    assert wrong.status_code == 401 and "the current password is wrong" in wrong.get_data(
        as_text=True)
    done = browser.post("/account/password", data={
        "current_password": PASSWORD, "new_password": "a new passphrase",
        "new_password_again": "a new passphrase", "csrf_token": csrf(browser, "/account/password")})
    assert done.status_code == 200 and "Password changed" in done.get_data(as_text=True)
    assert browser.get("/devices").status_code == 200, "this browser stays logged in"
    assert elsewhere.get("/devices").status_code == 302, "the other session ended"
    assert login(elsewhere, email).status_code == 401
    assert login(elsewhere, email, "a new passphrase").status_code == 302


def test_api_tokens_page_lists_and_revokes_only_ones_own(app):
    from sqlalchemy import select as _select

    from backend.accounts import tokens
    from backend.storage.models import User

    mine, theirs = app.client(), app.client()
    email, other = register(mine), register(theirs)
    with app.writer() as session, session.begin():
        me = session.scalars(_select(User).where(User.email == email)).one()
        them = session.scalars(_select(User).where(User.email == other)).one()
        kept, dropped = (tokens.issue_for_user(session, me) for _ in range(2))
        their_token = tokens.issue_for_user(session, them)
    with app.sessions() as session:
        ids = [t.id for t in tokens.of_user(session, me.id)]
        their_id = tokens.of_user(session, them.id)[0].id
    page = mine.get("/account/tokens").get_data(as_text=True)
    assert all(f"#{i}<" in page for i in ids) and f"#{their_id}<" not in page
    assert "Expires" in page

    # Someone else's token: 404, and it still works.
    refused = mine.post(f"/account/tokens/{their_id}/revoke",
                        data={"csrf_token": csrf(mine, "/account/tokens")})
    assert refused.status_code == 404
    with app.sessions() as session:
        assert tokens.authenticate(session, their_token).user.id == them.id
    # One's own: revoked.
    done = mine.post(f"/account/tokens/{ids[1]}/revoke",
                     data={"csrf_token": csrf(mine, "/account/tokens")})
    assert done.status_code == 302
    assert f"Token {ids[1]} is revoked" in mine.get(done.headers["Location"]).get_data(
        as_text=True)
    with app.sessions() as session:
        assert [t.id for t in tokens.of_user(session, me.id)] == [ids[0]]
        assert tokens.authenticate(session, kept).user.id == me.id
        with pytest.raises(Exception, match="invalid API token"):
            tokens.authenticate(session, dropped)


def test_operator_rollouts_pause_and_resume(app):
    from provisioning import releases as release_signing

    key = release_signing.Ed25519PrivateKey.generate()
    with app.writer() as session, session.begin():
        done = release_signing.publish(session, key, model="button", version="9.9.9",
                                       files={"replenish/x.mpy": b"x"})
    operator = app.client()
    login(operator, make_operator(app))
    listing = text(operator.get("/operator/releases"))
    assert f'id="release-{done.id}"' in listing and "9.9.9" in listing
    token = csrf(operator, "/operator/releases")
    assert operator.post(f"/operator/releases/{done.id}/pause").status_code == 400  # CSRF
    assert operator.post(f"/operator/releases/{done.id}/pause",
                         data={"csrf_token": token}).status_code == 302
    row = text(operator.get("/operator/releases")).split(f'id="release-{done.id}"')[1]
    assert "paused: paused by operator" in row.split("</tr>")[0]
    bad = operator.post(f"/operator/releases/{done.id}/resume",
                        data={"csrf_token": token, "percent": "150"})
    assert bad.status_code == 400 and "0 to 100" in text(bad)
    assert operator.post(f"/operator/releases/{done.id}/resume",
                         data={"csrf_token": token, "percent": "25"}).status_code == 302
    row = text(operator.get("/operator/releases")).split(f'id="release-{done.id}"')[1]
    assert "active" in row.split("</tr>")[0] and "25 %" in row.split("</tr>")[0]
