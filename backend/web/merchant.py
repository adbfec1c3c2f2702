"""Signed status callbacks from the webhook merchant (docs/merchant-webhooks.md)."""

from __future__ import annotations

import json
import logging

from flask import Blueprint, current_app, request
from sqlalchemy.exc import IntegrityError

from backend.accounts import signing
from backend.errors import Conflict, NotFound, ReplenishError
from backend.orders import catalogue
from backend.orders.fulfillment.base import MERCHANT_STATUSES, apply_status, update_catalogue
from backend.storage.models import MerchantCallback, Order
from backend.web.api import api_error

log = logging.getLogger(__name__)
bp = Blueprint("merchant", __name__, url_prefix="/api/v1/merchant")
# Under /api/v1, so every error (a 500 included) gets the API's JSON error body.
bp.register_error_handler(Exception, api_error)


class Replayed(Conflict):
    pass


def _signed_body(what: str) -> bytes:
    """The request's body, if the configured webhook merchant signed it (else 404 when
    none is configured, 401 with a log line when the signature is wrong)."""
    settings = current_app.config["SETTINGS"]
    if not settings.merchant_secret:
        raise NotFound("no webhook merchant is configured")
    body = request.get_data()
    try:
        signing.verify(settings.merchant_secret, request.headers, body)
    except signing.BadSignature as err:
        log.warning("refused %s: %s", what, err)
        raise
    return body


@bp.post("/callback")
def callback():
    body = _signed_body("merchant callback")
    try:
        event = json.loads(body)
        event_id, order_id, status = event["event_id"], int(event["order_id"]), event["status"]
    except (ValueError, KeyError, TypeError) as err:
        raise ReplenishError("callback body needs event_id, order_id and status") from err
    if status not in MERCHANT_STATUSES:
        raise ReplenishError(f"unknown status {status!r}")
    with current_app.config["WRITER_SESSIONS"]() as session, session.begin():
        order = session.get(Order, order_id, with_for_update=True)
        if order is None or order.merchant != "webhook":
            raise NotFound(f"no order {order_id} at this merchant")
        session.add(MerchantCallback(merchant="webhook", event_id=str(event_id)))
        try:
            session.flush()
        except IntegrityError as err:
            log.warning("refused replayed merchant callback %s", event_id)
            raise Replayed(f"callback {event_id} was already applied") from err
        changed = apply_status(session, order, status, actor="merchant:webhook",
                               reason=event.get("reason"))
        state = order.state
    log.info("merchant callback %s: order %d %s", event_id, order_id, status)
    return {"order_id": order_id, "state": state, "changed": changed}


@bp.post("/catalogue")
def catalogue_update():
    """Prices and availability from the webhook merchant, signed like its callbacks:
    {"event_id", "products": [{"sku", "price_minor"?, "currency"?, "available"?}]}.
    A merchant prices the products operators listed; it cannot add any."""
    body = _signed_body("merchant catalogue update")
    try:
        event = json.loads(body)
        event_id = str(event["event_id"])
        updates = [catalogue.MerchantUpdate(
            sku=str(item["sku"]), price_minor=item.get("price_minor"),
            currency=item.get("currency"), available=item.get("available"))
            for item in event["products"]]
    except (ValueError, KeyError, TypeError) as err:
        raise ReplenishError("catalogue body needs event_id and products "
                             "[{sku, price_minor, currency, available}]") from err
    for update in updates:
        if not (update.price_minor is None or (isinstance(update.price_minor, int)
                                               and not isinstance(update.price_minor, bool)
                                               )) \
                or not (update.available is None or isinstance(update.available, bool)) \
                or not (update.currency is None or isinstance(update.currency, str)):
            raise ReplenishError("price_minor must be an integer, available true or false, "
                                 "currency a string")
    with current_app.config["WRITER_SESSIONS"]() as session, session.begin():
        session.add(MerchantCallback(merchant="webhook", event_id=event_id))
        try:
            session.flush()
        except IntegrityError as err:
            log.warning("refused replayed merchant catalogue update %s", event_id)
            raise Replayed(f"update {event_id} was already applied") from err
        changed, unknown = update_catalogue(session, "webhook", updates)
    return {"changed": changed, "unknown_skus": unknown}
