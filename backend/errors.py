"""Errors the backend reports to callers. Each carries the answer it becomes.

Raise where the problem is found; the CoAP resource or the web app turns it into
the response (the pattern of aiocoap.error).
"""


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


class ConfigError(ReplenishError):
    """The configuration or key-encryption key is unusable."""
