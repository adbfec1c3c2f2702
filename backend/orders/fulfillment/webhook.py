"""A merchant reached over signed HTTPS webhooks (protocol: docs/merchant-webhooks.md).

Out: POST {merchant_url}/orders with the order and an idempotency key, signed.
In: status callbacks on the web app (backend/web/merchant.py), verified the same way.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request

from sqlalchemy.orm import sessionmaker

from backend.accounts import signing
from backend.orders.fulfillment.base import (
    Fulfillment,
    MerchantUnreachable,
    Placement,
    PlaceRequest,
)

log = logging.getLogger(__name__)
_ANSWERS = {"accepted", "backordered", "declined"}


class WebhookMerchant(Fulfillment):
    name = "webhook"

    def __init__(self, url: str, secret: str, timeout_s: float = 10.0):
        self._url = url.rstrip("/")
        self._secret = secret
        self._timeout_s = timeout_s

    def place(self, request: PlaceRequest, sessions: sessionmaker) -> Placement:
        body = json.dumps({
            "idempotency_key": request.idempotency_key, "order_id": request.order_id,
            "sku": request.sku, "quantity": request.quantity,
            "household_id": request.household_id,
        }, sort_keys=True).encode()
        headers = {**signing.sign_headers(self._secret, body),
                   "Idempotency-Key": request.idempotency_key}
        http = urllib.request.Request(f"{self._url}/orders", data=body, headers=headers,
                                      method="POST")
        try:
            with urllib.request.urlopen(http, timeout=self._timeout_s) as response:
                answer = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as err:
            if err.code >= 500 or err.code == 429:
                raise MerchantUnreachable(f"merchant answered {err.code}") from err
            log.warning("merchant refused order %d: HTTP %d", request.order_id, err.code)
            return Placement("declined", "merchant_rejected")
        except (OSError, ValueError) as err:  # refused, timeout, garbage
            raise MerchantUnreachable(f"{type(err).__name__}: {err}") from err
        status = answer.get("status")
        if status not in _ANSWERS:
            raise MerchantUnreachable(f"merchant answered an unknown status {status!r}")
        return Placement(status, answer.get("reason"), answer.get("merchant_ref"))
