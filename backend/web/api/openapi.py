"""The OpenAPI 3.1 document of API v1, served at /api/v1/openapi.json.

Written by hand as Python data, except the request bodies: those come from the same
`Body` declarations the views check requests with (validation.py), so a body the
document allows is a body the API accepts. Response schemas are strict (every field
required, no others) so schemathesis catches a view that drifts from them.
"""

from __future__ import annotations

import functools

from backend.accounts import signing
from backend.accounts import users as accounts
from backend.accounts.devices import SLOT_KINDS
from backend.orders import lifecycle as orders
from backend.orders.fulfillment.base import MERCHANT_STATUSES
from backend.orders import consent, display
from backend.web.api import devices, household, operator
from backend.web.api import orders as orders_api
from backend.web.api.common import PAGE_DEFAULT, PAGE_MAX, SLOT_MAX
from backend.web.api.validation import INT32_MAX, Field
from backend.web import device_health as health


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(properties: dict, description: str = "") -> dict:
    out = {"type": "object", "additionalProperties": False,
           "required": list(properties), "properties": properties}
    if description:
        out["description"] = description
    return out


def _null(kind: str, **more) -> dict:
    return {"type": [kind, "null"], **more}


STATES = [s.value for s in orders.State]
STR, INT, BOOL, NUM = ({"type": "string"}, {"type": "integer"}, {"type": "boolean"},
                       {"type": "number"})
TIME = {"type": "string", "format": "date-time"}
TIME_OR_NULL = _null("string", format="date-time")
DEVICE_ID = {"type": "string", "pattern": "^[0-9a-f]{16}$",
             "description": "16 hex digits, as printed on the label."}

_STATE = {
    "last_seen_at": TIME_OR_NULL,
    "battery_mv": _null("integer", description="As the device last reported it."),
    "battery": _null("string", enum=[*health.READINGS, None],
                     description="The battery in words: low below REPLENISH_LOW_BATTERY_MV, "
                     f"getting low within {health.HEADS_UP_MV} mV of it; null until measured."),
    "fw_version": _null("string", description="As the device last reported it."),
    "dropped_events": _null("integer", description="Events the device had to drop "
                            "(its queue was full), as it last reported."),
    "offline": {"type": "boolean", "description": "Seen once, then silent for longer "
                "than the offline threshold (REPLENISH_OFFLINE_AFTER_S)."},
    "low_battery": {"type": "boolean", "description": "Battery below "
                    "REPLENISH_LOW_BATTERY_MV."},
}

SCHEMAS = {
    "OpenAPI": {"type": "object", "required": ["openapi", "paths"]},
    "Error": _obj({"error": _obj({"code": {"type": "string", "examples": ["NotFound"]},
                                  "message": {"type": "string"}})},
                  "Every error, whatever the status."),
    "User": _obj({"id": INT, "email": STR, "role": {"enum": list(accounts.ROLES)},
                  "household_id": _null("integer")}),
    "NewToken": _obj({"token": {"type": "string", "description": "Bearer token; shown "
                                "only in this answer."},
                      "user": _ref("User")}),
    "NewAccount": _obj({"token": STR, "user": _ref("User"), "household": _ref("Household")}),
    "CurrentToken": _obj({"role": {"enum": list(accounts.ROLES)},
                          "user": {"oneOf": [_ref("User"), {"type": "null"}]},
                          "household_id": _null("integer"), "created_at": TIME,
                          "expires_at": TIME_OR_NULL}),
    "Tokens": _obj({"items": {"type": "array", "items": _obj({
        "id": INT, "created_at": TIME, "expires_at": TIME_OR_NULL,
        "current": {"type": "boolean", "description": "The token of this request."}})}}),
    "Household": _obj({"id": INT, "name": STR, "hold_window_s": INT,
                       "allow_multiple_open": BOOL, "max_orders_per_day": _null("integer"),
                       "monthly_limit_cents": _null("integer"),
                       "webhook_url": _null("string"), "webhook_secret_set": BOOL,
                       "locale": STR, "timezone": STR, "price_tolerance_pct": INT}),
    "Product": _obj({"sku": STR, "name": STR, "brand": _null("string"),
                     "unit": {"enum": list(display.UNITS)}, "package_amount": INT,
                     "currency": {"type": "string", "pattern": "^[A-Z]{3}$",
                                  "description": "ISO 4217."},
                     "price_minor": {"type": "integer", "description": "Price of one pack "
                                     "in minor units of `currency` (3798 = EUR 37.98)."},
                     "price_cents": {"type": "integer", "deprecated": True,
                                     "description": "Same as price_minor (older name)."},
                     "gtin": _null("string"), "image_url": _null("string"),
                     "available": BOOL, "default_lead_days": NUM}),
    "ImportResult": _obj({"added": INT, "changed": INT}),
    "CatalogueResult": _obj({"changed": INT, "unknown_skus": {"type": "array",
                                                              "items": STR}}),
    "Slot": _obj({"slot": INT, "product_sku": STR, "quantity": INT,
                  "kind": {"enum": list(SLOT_KINDS)}, "safety_days": NUM,
                  "confirmed_price_minor": _null("integer", description="The price per "
                                                 "pack the household confirmed; a press "
                                                 "above it (plus the tolerance) waits."),
                  "confirmed_currency": _null("string"),
                  "min_level": _null("integer"), "target_level": _null("integer")}),
    "Device": _obj({"device_id": DEVICE_ID, "serial": STR, "model": STR,
                    "name": _null("string"), "status": {"enum": list(operator.DEVICE_STATUSES)},
                    **_STATE, "test_mode": BOOL,
                    "slots": {"type": "array", "items": _ref("Slot")}}),
    "Transition": _obj({"from": {"enum": [*STATES, None]},
                        "to": {"enum": list(STATES)}, "at": TIME,
                        "actor": STR, "reason": _null("string")}),
    "Order": _obj({"id": INT, "device_id": DEVICE_ID, "slot": INT, "product_sku": STR,
                   "product": _obj({"name": STR, "brand": _null("string"),
                                    "package_amount": _null("integer"),
                                    "unit": _null("string")},
                                   "Snapshot of the product as ordered."),
                   "quantity": INT,
                   "line": {"type": "string", "description": "The order in the household's "
                            "words and locale, e.g. '2 × Coffee beans 1 kg · €37.98'."},
                   "state": {"enum": list(STATES)},
                   "source": STR, "test": BOOL, "currency": _null("string"),
                   "unit_price_minor": INT, "total_cents": INT, "created_at": TIME,
                   "hold_until": TIME_OR_NULL,
                   "cancellable": {"type": "boolean", "description": "Pending or "
                                   "awaiting consent: POST /orders/{order_id}/cancel will "
                                   "work."},
                   "consent": {"oneOf": [{"type": "null"}, _obj({
                       "reason": {"enum": list(consent.REASONS)},
                       "confirmed_price_minor": _null("integer"),
                       "current_price_minor": _null("integer"),
                       "available": _null("boolean"),
                       "waiting": BOOL})],
                       "description": "Why the order waited (or waits) for the "
                       "household; null when it never had to."},
                   "failure_reason": _null("string"),
                   "history": {"type": "array", "items": _ref("Transition"),
                               "description": "The status timeline, oldest first."}}),
    "Notification": _obj({"id": INT, "kind": STR, "message": STR,
                          "order_id": _null("integer"), "device_id": _null("string"),
                          "created_at": TIME, "read": BOOL, "read_at": TIME_OR_NULL}),
    "Marked": _obj({"marked": INT}),
    "CallbackResult": _obj({"order_id": INT, "state": {"enum": STATES}, "changed": BOOL}),
    "Reading": _obj({"id": INT, "at": TIME, "remaining": _null("integer"),
                     "battery_mv": _null("integer")}),
    "Forecast": _obj({"left_now": _null("integer", description="The latest reading."),
                      "left_now_at": TIME_OR_NULL,
                      "explanation": {"type": "string", "description": "The forecast in "
                                      "words, in the household's locale."},
                      "device_id": DEVICE_ID, "slot": INT, "product_sku": STR,
                      "rate_per_day": _null("number"), "remaining": _null("number"),
                      "run_out_at": TIME_OR_NULL, "lead_time_days": NUM,
                      "safety_stock": _null("number"), "reorder_point": _null("number"),
                      "should_order": BOOL, "last_refill_at": TIME_OR_NULL,
                      "readings_used": INT, "reason": STR}),
    "Batch": _obj({"id": INT, "name": STR, "model": STR, "count": INT,
                   "firmware_version": STR, "board": _null("string"),
                   "firmware_sha256": _null("string"), "created_by": STR,
                   "created_at": TIME, "devices": INT, "claimed": INT, "revoked": INT}),
    "FleetDevice": _obj({"device_id": DEVICE_ID, "serial": STR, "model": STR,
                         "batch_id": _null("integer"),
                         "status": {"enum": list(operator.DEVICE_STATUSES)},
                         "claimed": BOOL, **_STATE, "created_at": TIME,
                         "flashed_at": TIME_OR_NULL, "flashed_firmware": _null("string"),
                         "key_rotated_at": TIME_OR_NULL, "revoked_at": TIME_OR_NULL}),
}

for _name, _item in [("Devices", "Device"), ("Orders", "Order"),
                     ("Notifications", "Notification"), ("Products", "Product"),
                     ("Readings", "Reading"), ("Batches", "Batch"), ("Fleet", "FleetDevice")]:
    _key = {"Fleet": "devices", "Readings": "readings"}.get(_name, _name.lower())
    SCHEMAS[_name] = _obj({
        _key: {"type": "array", "items": _ref(_item)},
        "next_cursor": _null("string", description="Pass as ?cursor= for the next page; "
                             "null on the last page."),
        "next": _null("string", description="The next page's path and query; null on "
                      "the last page."),
    })

_ERRORS = {
    "400": ("BadRequest", "The request is malformed or a value is out of bounds; the "
            "message says which field and why."),
    "401": ("Unauthorized", "No token, or not a valid one."),
    "403": ("Forbidden", "The token's role may not do this (household vs operator)."),
    "404": ("NotFound", "No such thing — or it belongs to another household."),
    "409": ("Conflict", "Clashes with the current state (e.g. the order is no longer "
            "cancellable, the device is already claimed, the email is taken)."),
    "413": ("RequestEntityTooLarge", "The body is larger than the app accepts."),
    "415": ("UnsupportedMediaType", "The body is not sent as application/json."),
    "429": ("Locked", "Too many failed attempts: locked for a while (see Retry-After)."),
}
RESPONSES = {
    code: {"description": description,
           "content": {"application/json": {"schema": _ref("Error")}}}
    for code, (_, description) in _ERRORS.items()
}
RESPONSES["429"]["headers"] = {"Retry-After": {
    "description": "Seconds until the lockout ends.", "schema": {"type": "integer"}}}


def _param(name: str, where: str, schema: dict, description: str,
           required: bool = False) -> dict:
    return {"name": name, "in": where, "required": required or where == "path",
            "schema": schema, "description": description}


def _text(max_length: int) -> dict:
    """A query string as validation.query_text takes it: not empty, no control characters."""
    return Field(str, "", min_length=1, max_length=max_length).schema()


_ID = {"type": "integer", "minimum": 1, "maximum": INT32_MAX}
P_DEVICE = _param("device_id", "path", DEVICE_ID, "The device's id.")
P_SLOT = _param("index", "path", {"type": "integer", "minimum": 0, "maximum": SLOT_MAX},
                "The slot (button or sensor channel) on the device, from 0.")
P_LIMIT = _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": PAGE_MAX,
                                    "default": PAGE_DEFAULT}, "Items per page.")
P_CURSOR = _param("cursor", "query", {"type": "string", "pattern": "^[0-9]{1,10}$"},
                  "The next_cursor of the page before.")
PAGED = [P_LIMIT, P_CURSOR]
# The merchant's webhooks are signed instead of carrying a bearer token.
MERCHANT_SIGNATURE = [
    _param(signing.TIMESTAMP_HEADER, "header", {"type": "string"},
           "Unix time the request was signed at.", required=True),
    _param(signing.SIGNATURE_HEADER, "header", {"type": "string"},
           "HMAC-SHA256 signature (docs/merchant-webhooks.md).", required=True)]


def _id(name: str, what: str) -> dict:
    return _param(name, "path", _ID, f"The {what}'s id.")


def _op(summary: str, tag: str, ok: dict, errors: str = "", *, params=(), body=None,
        public: bool = False, description: str = "", body_schema: dict | None = None) -> dict:
    """One operation. `ok` maps a status to (schema name | None, description);
    `errors` lists error statuses, e.g. "400 404"."""
    out: dict = {"summary": summary, "tags": [tag], "responses": {}}
    if description:
        out["description"] = description
    if params:
        out["parameters"] = list(params)
    if body is not None or body_schema is not None:
        media = {"schema": body.schema() if body is not None else body_schema}
        if body is not None and body.example is not None:
            media["example"] = body.example
        out["requestBody"] = {"required": True, "content": {"application/json": media}}
    if public:
        out["security"] = []
    for status, (schema, text) in ok.items():
        out["responses"][status] = {"description": text}
        if schema is not None:
            out["responses"][status]["content"] = {"application/json": {
                "schema": _ref(schema)}}
    codes = errors.split() + ([] if public else ["401"]) + (["413"] if "requestBody" in out
                                                             else [])
    for code in sorted(set(codes)):
        out["responses"][code] = {"$ref": f"#/components/responses/{code}"}
    return out


HOUSEHOLD_ONLY = "Household tokens only; an operator's token gets 403."
OPERATOR_ONLY = "Operator tokens only; a household's token gets 403."

PATHS = {
    "/openapi.json": {"get": _op(
        "This document", "meta", {"200": ("OpenAPI", "The OpenAPI 3.1 document.")},
        public=True)},
    "/accounts": {"post": _op(
        "Register a household and its first member", "accounts",
        {"201": ("NewAccount", "Registered; the token is shown only now.")},
        "400 409 415 429", body=household.REGISTER, public=True,
        description=f"At most {accounts.REGISTRATIONS_PER_ADDRESS} attempts per "
        f"{accounts.WINDOW.seconds // 60} minutes from one address: then 429 with "
        "Retry-After.")},
    "/tokens": {"get": _op(
        "The unexpired tokens of this token's owner", "accounts",
        {"200": ("Tokens", "Oldest first; `current` marks the one in use.")},
        description="A user's tokens, or a household's command-line tokens. Each "
        "expires REPLENISH_API_TOKEN_DAYS (default 90) days after it was issued."),
        "post": _op(
        "Log in: a new token for an email and password", "accounts",
        {"201": ("NewToken", "Logged in; the token is shown only now.")},
        "400 401 415 429", body=household.LOGIN, public=True,
        description=f"After {accounts.MAX_FAILURES} failures within "
        f"{accounts.WINDOW.seconds // 60} minutes for an email (or "
        f"{accounts.ADDRESS_MAX_FAILURES} from one address, which many people may share "
        f"behind NAT) log-in is locked for {accounts.LOCKOUT.seconds // 60} minutes: 429 "
        "with Retry-After.")},
    "/tokens/{token_id}": {"delete": _op(
        "Revoke one of your tokens", "accounts",
        {"204": (None, "Revoked; that token no longer works.")}, "404",
        params=[_id("token_id", "token")])},
    "/account/password": {"post": _op(
        "Change the password of the token's user", "accounts",
        {"204": (None, "Changed; the user's other tokens and web sessions are revoked, "
                       "this token keeps working.")}, "400 401 403 415 429",
        body=household.PASSWORD_CHANGE,
        description="A wrong current password counts toward the account's lockout, as "
        "at log-in. A household's command-line token has no user: 403.")},
    "/tokens/current": {
        "get": _op("The token in use: its role and user", "accounts",
                   {"200": ("CurrentToken", "The token's owner.")}),
        "delete": _op("Log out: revoke the token in use", "accounts",
                      {"204": (None, "Revoked; the token no longer works.")}),
    },
    "/household": {
        "get": _op("The household and its order policies", "household",
                   {"200": ("Household", "The household.")}, "403",
                   description=HOUSEHOLD_ONLY),
        "patch": _op("Change order policies (only the fields sent)", "household",
                     {"200": ("Household", "The household as changed.")}, "400 403 415",
                     body=household.SETTINGS, description=HOUSEHOLD_ONLY),
    },
    "/products": {"get": _op(
        "The catalogue", "household", {"200": ("Products", "A page of products by SKU.")},
        "400", params=[P_LIMIT, _param("cursor", "query", _text(100),
                                       "The next_cursor of the page before.")])},
    "/devices": {"get": _op(
        "The household's devices with their state and slots", "devices",
        {"200": ("Devices", "A page of devices, oldest claim first.")}, "400 403",
        params=PAGED, description=HOUSEHOLD_ONLY)},
    "/devices/claim": {"post": _op(
        "Claim a device with the code on its label", "devices",
        {"201": ("Device", "Claimed: the device is the household's now.")},
        "400 403 404 409 415 429", body=devices.CLAIM,
        description=f"A wrong code counts toward a lockout of the household's claims "
        f"({accounts.MAX_FAILURES} within {accounts.WINDOW.seconds // 60} minutes lock "
        f"claiming for {accounts.LOCKOUT.seconds // 60} minutes: 429). The code is "
        "looked up by its SHA-256, so timing tells nothing about how close a guess was.")},
    "/devices/{device_id}": {
        "get": _op("One device", "devices", {"200": ("Device", "The device.")}, "403 404",
                   params=[P_DEVICE]),
        "patch": _op("Rename a device or switch its test mode", "devices",
                     {"200": ("Device", "The device as changed.")}, "400 403 404 415",
                     params=[P_DEVICE], body=devices.DEVICE_CHANGES),
        "delete": _op("Remove a device from the household", "devices",
                      {"204": (None, "Removed: unclaimed again, its events refused until "
                               "it is claimed with its label's code.")}, "403 404 409",
                      params=[P_DEVICE], description="Its pending and awaiting-consent "
                      "orders are cancelled; 409 while an order from it is on its way to "
                      "a merchant."),
    },
    "/devices/{device_id}/slots/{index}": {"put": _op(
        "Choose the product and quantity of a slot", "devices",
        {"200": ("Slot", "The slot as configured.")}, "400 403 404 415",
        params=[P_DEVICE, P_SLOT], body=devices.SLOT_BODY,
        description="404 also when the product is not in the catalogue.")},
    "/devices/{device_id}/slots/{index}/levels": {"get": _op(
        "A sensor slot's level history, newest first", "devices",
        {"200": ("Readings", "A page of level reports.")}, "400 403 404",
        params=[P_DEVICE, P_SLOT, *PAGED])},
    "/devices/{device_id}/slots/{index}/forecast": {"get": _op(
        "A sensor slot's forecast: rate, level, run-out date, reorder point", "devices",
        {"200": ("Forecast", "The forecast now.")}, "403 404", params=[P_DEVICE, P_SLOT])},
    "/orders": {"get": _op(
        "The household's orders with their timelines, newest first", "orders",
        {"200": ("Orders", "A page of orders.")}, "400 403",
        params=[*PAGED, _param("state", "query", {"enum": list(STATES)},
                               "Only orders in this state.")])},
    "/orders/{order_id}": {"get": _op(
        "One order with its timeline", "orders", {"200": ("Order", "The order.")},
        "403 404", params=[_id("order_id", "order")])},
    "/orders/{order_id}/cancel": {"post": _op(
        "Cancel an order while it is pending (in its hold window) or awaiting consent",
        "orders", {"200": ("Order", "Cancelled.")}, "403 404 409",
        params=[_id("order_id", "order")])},
    "/orders/{order_id}/confirm": {"post": _op(
        "Confirm an order awaiting consent: it is placed", "orders",
        {"200": ("Order", "Confirmed: on its way to the merchant.")}, "400 403 404 409 415",
        params=[_id("order_id", "order")], body=orders_api.CONFIRM,
        description="409 when the order is not awaiting consent, the product is still "
        "unavailable, or the price is now above the one agreed (the body's, or the "
        "order's). The slot then remembers the confirmed price.")},
    "/orders/{order_id}/decline": {"post": _op(
        "Decline an order awaiting consent: it is cancelled", "orders",
        {"200": ("Order", "Declined (cancelled).")}, "403 404 409",
        params=[_id("order_id", "order")])},
    "/notifications": {"get": _op(
        "The household's notifications, newest first", "notifications",
        {"200": ("Notifications", "A page of notifications.")}, "400 403",
        params=[*PAGED, _param("unread", "query", {"enum": ["true", "false"]},
                               "true: only unread ones; false: only read ones.")])},
    "/notifications/{notification_id}/read": {"post": _op(
        "Mark a notification read", "notifications",
        {"200": ("Notification", "The notification, read.")}, "403 404",
        params=[_id("notification_id", "notification")])},
    "/notifications/read-all": {"post": _op(
        "Mark every notification read", "notifications",
        {"200": ("Marked", "How many were unread.")}, "403")},
    "/operator/batches": {"get": _op(
        "Provisioning batches, newest first", "operator",
        {"200": ("Batches", "A page of batches.")}, "400 403", params=PAGED,
        description=OPERATOR_ONLY)},
    "/operator/batches/{batch_id}": {"get": _op(
        "One batch", "operator", {"200": ("Batch", "The batch.")}, "403 404",
        params=[_id("batch_id", "batch")], description=OPERATOR_ONLY)},
    "/operator/devices": {"get": _op(
        "The fleet, filtered", "operator", {"200": ("Fleet", "A page of devices.")},
        "400 403", description=OPERATOR_ONLY + " Filters combine; a device never seen "
        "counts as seen before any date (as on the fleet page).",
        params=[*PAGED,
                _param("model", "query", _text(50),
                       "Only this model, e.g. button."),
                _param("fw_version", "query", _text(50),
                       "Only devices reporting this firmware version."),
                _param("status", "query", {"enum": list(operator.DEVICE_STATUSES)},
                       "Only active or only revoked devices."),
                _param("batch_id", "query", _ID, "Only this batch's devices."),
                _param("last_seen_before", "query", TIME,
                       "Last seen before this time, or never."),
                _param("last_seen_after", "query", TIME, "Last seen at or after this time."),
                _param("battery_below", "query",
                       {"type": "integer", "minimum": 0, "maximum": 100_000},
                       "Battery below this many millivolts.")])},
    "/operator/devices/{device_id}": {"get": _op(
        "One device of the fleet", "operator", {"200": ("FleetDevice", "The device.")},
        "403 404", params=[P_DEVICE], description=OPERATOR_ONLY)},
    "/operator/products": {"post": _op(
        "Add a product to the catalogue", "operator",
        {"201": ("Product", "Added.")}, "400 403 409 415", body=operator.NEW_PRODUCT,
        description=OPERATOR_ONLY)},
    "/operator/products/{sku}": {"patch": _op(
        "Change a product (only the fields sent)", "operator",
        {"200": ("Product", "The product as changed.")}, "400 403 404 415",
        params=[_param("sku", "path", {"type": "string", "pattern": "^[A-Z0-9][A-Z0-9._-]"
                                       "{0,99}$"}, "The product's SKU.")],
        body=operator.PRODUCT_CHANGES, description=OPERATOR_ONLY + " Orders already made "
        "keep their price; presses above a slot's confirmed price wait for the household.")},
    "/operator/products/import": {"post": _op(
        "Add or change products from CSV (all or nothing)", "operator",
        {"200": ("ImportResult", "How many were added and changed.")}, "400 403 415",
        body=operator.CSV_IMPORT, description=OPERATOR_ONLY)},
    "/operator/devices/{device_id}/revoke": {"post": _op(
        "Revoke a device: its events are refused from now on", "operator",
        {"200": ("FleetDevice", "Revoked (also when it was already).")}, "403 404",
        params=[P_DEVICE], description=OPERATOR_ONLY)},
    "/merchant/callback": {"post": _op(
        "A webhook merchant's signed status callback", "merchant",
        {"200": ("CallbackResult", "Applied (changed is false if it changed nothing).")},
        "400 401 404 409", public=True,
        params=MERCHANT_SIGNATURE,
        description="For the merchant, not for households: signed with the merchant "
        "secret instead of a bearer token. 404 when no webhook merchant is configured. "
        "See docs/merchant-webhooks.md.",
        body_schema={"type": "object", "required": ["event_id", "order_id", "status"],
                     "properties": {"event_id": STR, "order_id": INT,
                                    "status": {"enum": sorted(MERCHANT_STATUSES)},
                                    "reason": _null("string")}})},
    "/merchant/catalogue": {"post": _op(
        "A webhook merchant's signed price and availability update", "merchant",
        {"200": ("CatalogueResult", "Applied to the products listed.")},
        "400 401 404 409", public=True,
        params=MERCHANT_SIGNATURE,
        description="For the merchant: signed with the merchant secret like its "
        "callbacks. It changes prices and availability of products operators listed, "
        "never adds one; unknown SKUs are listed back.",
        body_schema={"type": "object", "required": ["event_id", "products"],
                     "properties": {"event_id": STR, "products": {"type": "array", "items": {
                         "type": "object", "required": ["sku"],
                         "properties": {"sku": STR, "price_minor": INT, "currency": STR,
                                        "available": BOOL}}}}})},
}


def _operation_ids(paths: dict) -> dict:
    """operationId for client generators: the method and the path's words, e.g.
    get_devices_by_device_id_slots_by_index_forecast."""
    for path, item in paths.items():
        words = [("by_" + w[1:-1]) if w.startswith("{") else w.replace("-", "_").replace(".", "_")
                 for w in path.strip("/").split("/")]
        for method, operation in item.items():
            operation["operationId"] = "_".join([method, *words])
    return paths


# Confirming without a body confirms at the price the order shows.
PATHS["/orders/{order_id}/confirm"]["post"]["requestBody"]["required"] = False


@functools.cache
def document() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Replenish API", "version": "1",
                 "description": "Households' devices, orders and notifications, and the "
                 "operators' fleet. Guide: docs/api.md."},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "paths": _operation_ids(PATHS),
        "components": {
            "schemas": SCHEMAS,
            "responses": RESPONSES,
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "A token from POST /accounts or POST /tokens (or "
                "`replenish household create`)."}},
        },
    }
