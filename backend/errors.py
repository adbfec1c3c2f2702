"""Errors the backend reports to callers. Each carries the answer it becomes.

Raise where the problem is found; the CoAP resource or the web app turns it into
the response (the pattern of aiocoap.error).
"""

from __future__ import annotations


class ReplenishError(Exception):
    """Base class: an error a caller should see, with a message safe to show."""

    http_status = 400


class MalformedEvent(ReplenishError):
    """The request is not a well-formed protocol v1 event (CoAP 4.00)."""


class NotFound(ReplenishError):
    """The thing does not exist, or belongs to someone else (HTTP 404)."""

    http_status = 404


class Conflict(ReplenishError):
    """The request clashes with the current state (HTTP 409)."""

    http_status = 409


class Unauthorized(ReplenishError):
    """Missing or wrong credentials (HTTP 401)."""

    http_status = 401


class Locked(ReplenishError):
    """Too many failed attempts (log-in, claim code): locked out for a while (HTTP 429).

    `retry_after_s` is what a Retry-After header should say."""

    http_status = 429

    def __init__(self, message: str, retry_after_s: int = 0):
        super().__init__(message)
        self.retry_after_s = retry_after_s

    @classmethod
    def until(cls, locked_until, now) -> Locked:
        seconds = max(1, int((locked_until - now).total_seconds() + 0.999))
        minutes = (seconds + 59) // 60
        return cls(f"too many failed attempts: try again after {locked_until:%H:%M} UTC "
                   f"(in {minutes} minute{'s' if minutes != 1 else ''})", seconds)


class ConfigError(ReplenishError):
    """The configuration or key-encryption key is unusable."""
