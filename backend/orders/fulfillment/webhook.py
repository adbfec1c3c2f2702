"""A merchant reached over signed HTTPS webhooks (protocol: docs/merchant-webhooks.md).

Out: POST {merchant_url}/orders with the order and an idempotency key, signed, through
the outbound client (address policy, connect and total timeouts, no redirects:
backend/orders/outbound/).
In: status callbacks on the web app (backend/web/merchant.py), verified the same way.
"""

from __future__ import annotations

import json
import logging

from sqlalchemy.orm import sessionmaker

from backend.accounts import signing
from backend.orders.fulfillment.base import (
    Fulfillment,
    MerchantUnreachable,
    Placement,
    PlaceRequest,
)
from backend.orders.outbound import AddressRefused, Outbound, OutboundError

log = logging.getLogger(__name__)
_ANSWERS = {"accepted", "backordered", "declined"}


class WebhookMerchant(Fulfillment):
    name = "webhook"

    def __init__(self, url: str, secret: str, outbound: Outbound):
        self._url = url.rstrip("/")
        self._secret = secret
        self._outbound = outbound

    def place(self, request: PlaceRequest, sessions: sessionmaker) -> Placement:
        body = json.dumps({
            "idempotency_key": request.idempotency_key, "order_id": request.order_id,
            "sku": request.sku, "quantity": request.quantity,
            "household_id": request.household_id,
            "unit_price_minor": request.unit_price_minor, "currency": request.currency,
            "total_minor": request.unit_price_minor * request.quantity,
        }, sort_keys=True).encode()
        headers = {**signing.sign_headers(self._secret, body),
                   "Idempotency-Key": request.idempotency_key}
        try:
            reply = self._outbound.post(f"{self._url}/orders", body, headers,
                                        what="the merchant URL")
        except (OutboundError, AddressRefused) as err:  # refused, timeout, no address
            raise MerchantUnreachable(str(err)) from err
        if reply.redirect:
            raise MerchantUnreachable(f"merchant answered {reply.status}; redirects are "
                                      f"not followed")
        if reply.status >= 500 or reply.status == 429:
            raise MerchantUnreachable(f"merchant answered {reply.status}")
        if reply.status >= 400:
            log.warning("merchant refused order %d: HTTP %d", request.order_id, reply.status)
            return Placement("declined", "merchant_rejected")
        try:
            answer = json.loads(reply.body or b"{}")
        except ValueError as err:
            raise MerchantUnreachable(f"merchant answered no JSON: {err}") from err
        if not isinstance(answer, dict):
            raise MerchantUnreachable("merchant answered no JSON object")
        status = answer.get("status")
        if status not in _ANSWERS:
            raise MerchantUnreachable(f"merchant answered an unknown status {status!r}")
        return Placement(status, answer.get("reason"), answer.get("merchant_ref"))
