"""Consent before money, end to end: the catalogue's price raised (or the product made
unavailable) by an operator over the API, a press signed and sent over real aiocoap, the
order waiting for the household, then confirmed (→ delivered by the simulator) or declined
(→ cancelled, nothing sent to a merchant). SQLite and PostgreSQL."""

from __future__ import annotations

import json
import secrets
import urllib.request
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from backend.accounts import signing, tokens
from backend.accounts import users as accounts
from backend.protocol import Result
from backend.storage.db import utcnow
from backend.storage.models import Order, OutboxItem, Product, Slot
from devtools.net import api, coap_post, coap_post_all
from tests.backend.ingest.test_ingest import answer_of, press
from tests.conftest import DATABASES
from tests.worker_helpers import Backends, notification_kinds, path_of, until

pytestmark = pytest.mark.parametrize("db_url", DATABASES, indirect=True)

SECRET = "merchant-secret-for-tests"


def operator_token(backend) -> str:
    with backend.writer_sessions() as session, session.begin():
        user = accounts.create_operator(session, f"ops-{secrets.token_hex(3)}@example.org",
                                        "correct horse battery")
        return tokens.issue_for_user(session, user)


def set_product(world, token, **changes) -> dict:
    status, body = api("PATCH", f"{world.api_url}/operator/products/DETERGENT-1L", token,
                       changes)
    assert status == 200, body
    return body


def order_of(world, order_id) -> dict:
    status, body = api("GET", f"{world.api_url}/orders/{order_id}", world.token)
    assert status == 200, body
    return body


def test_a_dearer_press_waits_then_the_household_confirms_and_it_is_delivered(world, backend):
    ops = operator_token(backend)
    assert set_product(world, ops, price_minor=999)["price_minor"] == 999  # was 899
    button = world.buttons[0]
    first, again = press(button, 1), press(button, 2)
    answers = [answer_of(button, r, a) for r, a in
               zip([first, again], coap_post_all(world.event_url, [first, again]))]
    assert answers[0].result is Result.CREATED and answers[0].state == "awaiting_consent"
    # The toddler presses again: the same order, still waiting, never a second one.
    assert answers[1].result is Result.VALID and answers[1].order == answers[0].order
    # A retransmission of the first press gets the same answer.
    assert answer_of(button, first, coap_post(world.event_url, first)) == answers[0]
    order_id = answers[0].order

    waiting = order_of(world, order_id)
    assert waiting["state"] == "awaiting_consent" and waiting["cancellable"] is True
    assert waiting["line"] == "2 × Laundry detergent 1 l · €19.98"
    assert waiting["consent"] == {"reason": "price_increased", "confirmed_price_minor": 899,
                                  "current_price_minor": 999, "available": True,
                                  "waiting": True}
    assert (waiting["unit_price_minor"], waiting["total_cents"], waiting["currency"]) == (
        999, 1998, "EUR")
    for _ in range(3):  # the worker never places it on its own
        backend.order_worker.run_once()
    assert order_of(world, order_id)["state"] == "awaiting_consent"
    assert "order_awaiting_consent" in notification_kinds(backend, world.household_id)
    with backend.sessions() as session:
        assert session.scalar(select(func.count()).select_from(OutboxItem).where(
            OutboxItem.order_id == order_id)) == 0, "nothing goes to a merchant yet"

    # Agreeing to less than the price now changes nothing.
    status, body = api("POST", f"{world.api_url}/orders/{order_id}/confirm", world.token,
                       {"unit_price_minor": 950})
    assert status == 409 and "€9.99" in body["error"]["message"], body
    status, body = api("POST", f"{world.api_url}/orders/{order_id}/confirm", world.token,
                       {"unit_price_minor": 999})
    assert status == 200 and body["state"] == "confirmed", body
    assert body["history"][-1]["reason"] == "confirmed by household at €9.99 a pack"
    until(backend, lambda s: s.get(Order, order_id).state == "delivered")
    assert path_of(backend, order_id) == ["awaiting_consent", "confirmed", "placed",
                                          "shipped", "delivered"]
    with backend.sessions() as session:
        order = session.get(Order, order_id)
        assert (order.product_name, order.pack_amount, order.pack_unit) == (
            "Laundry detergent", 1000, "ml")
        slot = session.scalars(select(Slot).where(Slot.device_pk == order.device_pk)).one()
        assert (slot.confirmed_price_minor, slot.confirmed_currency) == (999, "EUR")

    # The slot remembers the confirmed price: the next press at it is placed at once.
    third = press(button, 3)
    answer = answer_of(button, third, coap_post(world.event_url, third))
    assert answer.result is Result.CREATED and answer.state == "confirmed"


def test_an_unavailable_product_waits_and_the_household_declines(world, backend):
    ops = operator_token(backend)
    set_product(world, ops, available=False)
    button = world.buttons[0]
    request = press(button, 1)
    answer = answer_of(button, request, coap_post(world.event_url, request))
    assert answer.result is Result.CREATED and answer.state == "awaiting_consent"
    status, body = api("POST", f"{world.api_url}/orders/{answer.order}/confirm", world.token)
    assert status == 409 and "unavailable" in body["error"]["message"], body
    status, body = api("POST", f"{world.api_url}/orders/{answer.order}/decline", world.token)
    assert status == 200 and body["state"] == "cancelled", body
    assert body["history"][-1]["reason"] == "declined by household"
    assert body["consent"]["reason"] == "unavailable" and body["consent"]["waiting"] is False
    status, body = api("POST", f"{world.api_url}/orders/{answer.order}/decline", world.token)
    assert status == 409, body
    for _ in range(3):
        backend.order_worker.run_once()
    assert path_of(backend, answer.order) == ["awaiting_consent", "cancelled"]
    with backend.sessions() as session:
        assert session.scalar(select(func.count()).select_from(OutboxItem).where(
            OutboxItem.order_id == answer.order)) == 0, "nothing was sent to a merchant"
    # The slot is free again: the next press makes a new order (still waiting).
    again = press(button, 2)
    answer2 = answer_of(button, again, coap_post(world.event_url, again))
    assert answer2.result is Result.CREATED and answer2.order != answer.order


def test_within_the_households_tolerance_a_dearer_press_is_placed(world, backend):
    ops = operator_token(backend)
    status, body = api("PATCH", f"{world.api_url}/household", world.token,
                       {"price_tolerance_pct": 10})
    assert status == 200 and body["price_tolerance_pct"] == 10
    set_product(world, ops, price_minor=988)  # 899 + 10 % = 988.9: within
    button = world.buttons[0]
    request = press(button, 1)
    answer = answer_of(button, request, coap_post(world.event_url, request))
    assert answer.result is Result.CREATED and answer.state == "confirmed"
    set_product(world, ops, price_minor=989)  # above: the second button's press waits
    other = world.buttons[1]
    request = press(other, 1)
    answer = answer_of(other, request, coap_post(world.event_url, request))
    assert answer.result is Result.CREATED and answer.state == "awaiting_consent"


@pytest.fixture
def backends(settings, tmp_path):
    started = Backends(settings, tmp_path)
    yield started
    started.close()


def test_a_merchant_price_rise_makes_the_next_press_wait(backends):
    """The fulfillment side: the webhook merchant's signed catalogue update."""
    backend, world = backends.start(merchant_secret=SECRET)
    body = json.dumps({"event_id": "prices-1", "products": [
        {"sku": "DETERGENT-1L", "price_minor": 1049, "available": True},
        {"sku": "NOT-LISTED", "price_minor": 1}]}).encode()
    url = f"http://127.0.0.1:{world.http_port}/api/v1/merchant/catalogue"

    def post(headers):
        request = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": "application/json", **headers})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            with err:
                return err.code, json.loads(err.read())

    assert post({})[0] == 401
    assert post(signing.sign_headers(SECRET, body)) == (
        200, {"changed": 1, "unknown_skus": ["NOT-LISTED"]})
    assert post(signing.sign_headers(SECRET, body))[0] == 409  # replayed
    with backend.sessions() as session:
        assert session.get(Product, "DETERGENT-1L").price_cents == 1049
        assert session.get(Product, "NOT-LISTED") is None
    button = world.buttons[0]
    request = press(button, 1)
    answer = answer_of(button, request, coap_post(world.event_url, request))
    assert answer.result is Result.CREATED and answer.state == "awaiting_consent"


def test_an_order_never_confirmed_is_cancelled_after_a_week_and_frees_its_slot(world, backend):
    """REPLENISH_CONSENT_EXPIRE_S (7 days): the household neither confirmed nor declined.
    Left waiting, the order would hold its slot's one open order for ever."""
    set_product(world, operator_token(backend), available=False)
    answers = []
    for button in world.buttons:
        request = press(button, 1)
        answers.append(answer_of(button, request, coap_post(world.event_url, request)))
    assert [a.state for a in answers] == ["awaiting_consent"] * 2
    stale, fresh = (a.order for a in answers)
    before = notification_kinds(backend, world.household_id).count("order_cancelled")
    with backend.writer_sessions() as session, session.begin():
        for order_id, age in ((stale, timedelta(days=7, minutes=1)),
                              (fresh, timedelta(days=6, hours=23))):
            session.get(Order, order_id).created_at = utcnow() - age
    # The backend's own worker thread may be first to the expiry (it once was, and a
    # round of the test's then had nothing left to do): wait for the outcome instead.
    until(backend, lambda session: session.get(Order, stale).state == "cancelled")
    assert path_of(backend, stale) == ["awaiting_consent", "cancelled"]
    assert path_of(backend, fresh) == ["awaiting_consent"]
    assert order_of(world, stale)["history"][-1]["reason"] == "not confirmed within 7 days"
    assert notification_kinds(backend, world.household_id).count("order_cancelled") \
        == before + 1
    again = press(world.buttons[0], 2)
    answer = answer_of(world.buttons[0], again, coap_post(world.event_url, again))
    assert answer.result is Result.CREATED and answer.order not in (stale, fresh)
