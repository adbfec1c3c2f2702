"""JSON API v1 under /api/v1: bearer-token auth, keyset pagination, one error shape.

One blueprint per area, nested in `api` (common.py): household.py (accounts, tokens,
settings, catalogue, notifications), devices.py, orders.py, operator.py; openapi.py is the OpenAPI 3.1 document served at
/api/v1/openapi.json. docs/api.md is the guide.
"""

from __future__ import annotations

import logging

from flask import request
from werkzeug.exceptions import HTTPException

from backend.errors import Locked, ReplenishError
from backend.web.api import devices, household, openapi, operator, orders
from backend.web.api.common import bp

for _area in (devices, household, operator, orders):
    bp.register_blueprint(_area.bp)

log = logging.getLogger(__name__)


@bp.get("/openapi.json")
def openapi_document():
    return openapi.document()


@bp.errorhandler(Exception)
def api_error(err: Exception):
    """Every error of an API view as {"error": {"code", "message"}}, logged in one line.

    The log line has the status and code but not the message or the body: a body may
    hold a password or a claim code."""
    from backend.web import error_body

    if isinstance(err, ReplenishError):
        status = err.http_status
        code = "BadRequest" if type(err) is ReplenishError else type(err).__name__
        message = str(err)
    elif isinstance(err, HTTPException):
        status, message = err.code or 500, err.description or err.name
        code = err.name.replace(" ", "").replace("'", "")
    else:
        log.exception("API %s %s failed", request.method, request.path)
        return error_body(500, "InternalError", "something went wrong on our side; "
                                                "it has been logged")
    log.info("API %s %s: %d %s", request.method, request.path, status, code)
    response, status = error_body(status, code, message)
    if isinstance(err, Locked):
        response.headers["Retry-After"] = str(err.retry_after_s)
    return response, status
