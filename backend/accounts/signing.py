"""Signed HTTP messages between Replenish and merchants or household webhooks.

Signature = HMAC-SHA256(secret, f"{timestamp}.".encode() + body), sent as
`X-Replenish-Signature: v1=<hex>` with `X-Replenish-Timestamp: <unix seconds>`.
The timestamp bounds replays to the tolerance window; receivers also remember
event ids within it (docs/merchant-webhooks.md).
"""

from __future__ import annotations

import hashlib
import hmac
import time

from backend.errors import Unauthorized

TIMESTAMP_HEADER = "X-Replenish-Timestamp"
SIGNATURE_HEADER = "X-Replenish-Signature"
TOLERANCE_S = 300


class BadSignature(Unauthorized):
    pass


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def sign_headers(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    timestamp = int(time.time() if now is None else now)
    return {TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: signature(secret, timestamp, body),
            "Content-Type": "application/json"}


def verify(secret: str, headers, body: bytes, now: float | None = None,
           tolerance_s: int = TOLERANCE_S) -> int:
    """Check a signed request; return its timestamp. Raises BadSignature with a reason."""
    try:
        timestamp = int(headers.get(TIMESTAMP_HEADER, ""))
    except ValueError as err:
        raise BadSignature("missing or malformed timestamp") from err
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_s:
        raise BadSignature("timestamp outside the tolerance window")
    given = headers.get(SIGNATURE_HEADER, "")
    if not hmac.compare_digest(given.encode(), signature(secret, timestamp, body).encode()):
        raise BadSignature("signature does not match")
    return timestamp
