"""Request bodies and query parameters: declared once, checked with words, documented.

Each request body is a `Body` of `Field`s. The same declaration checks what a client
sent (`Body.parse`) and becomes the request schema in the OpenAPI document
(`Body.schema`), so the document and the checks cannot drift apart. Errors name the
field and what it must be, never the value sent (it may be a password or a code).

The bounds are the database's: PostgreSQL refuses a string longer than its column, an
integer beyond 32 bits and a NUL character, so those are refused here with a 400 before
any query runs.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import request

from backend.errors import ReplenishError

INT32_MAX = 2**31 - 1


class BadRequest(ReplenishError):
    """The request is malformed or a value is out of bounds (HTTP 400)."""


class UnsupportedMediaType(ReplenishError):
    """The body is not JSON (HTTP 415)."""

    http_status = 415


_TYPE_WORDS = {str: "a string", int: "an integer", bool: "true or false", float: "a number"}
_JSON_TYPES = {str: "string", int: "integer", bool: "boolean", float: "number"}


@dataclass(frozen=True)
class Field:
    kind: type
    description: str
    required: bool = False
    nullable: bool = False
    minimum: float | None = None
    maximum: float | None = None
    min_length: int = 0
    max_length: int | None = None
    choices: tuple[str, ...] | None = None
    write_only: bool = False  # a secret: documented as such, never echoed
    format: str | None = None  # JSON Schema format, e.g. "email"
    multiline: bool = False  # text such as CSV: tabs and line breaks allowed

    def schema(self) -> dict:
        kind = _JSON_TYPES[self.kind]
        out: dict = {"type": [kind, "null"] if self.nullable else kind}
        if self.description:
            out["description"] = self.description
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.kind is str:
            out["minLength"] = self.min_length
            if self.max_length is not None:
                out["maxLength"] = self.max_length
            out["pattern"] = (r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]*$"
                              if self.multiline else r"^[^\u0000-\u001f\u007f]*$")
        if self.choices:
            out["enum"] = list(self.choices) + ([None] if self.nullable else [])
        if self.write_only:
            out["writeOnly"] = True
        if self.format:
            out["format"] = self.format
        return out

    def check(self, name: str, value):
        if value is None:
            if self.nullable:
                return None
            raise BadRequest(f"{name} must be {_TYPE_WORDS[self.kind]}, not null")
        ok = isinstance(value, self.kind) and not (self.kind is int and isinstance(value, bool))
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok, value = True, float(value)
        if not ok:
            raise BadRequest(f"{name} must be {_TYPE_WORDS[self.kind]}")
        if self.kind is float and not math.isfinite(value):
            raise BadRequest(f"{name} must be a finite number")
        if self.kind is str:
            check_text(name, value, self.max_length, self.min_length, self.multiline)
            if self.choices and value not in self.choices:
                raise BadRequest(f"{name} must be one of {list(self.choices)}")
            # The address itself is checked by backend.accounts.users (the document's "email"
            # format); the pages forgive spaces around it, the API takes it exactly.
            if self.format == "email" and any(c.isspace() for c in value):
                raise BadRequest(f"{name} must be an email address like name@example.org")
        if self.minimum is not None and value < self.minimum:
            raise BadRequest(f"{name} must not be negative" if self.minimum == 0
                             else f"{name} must be at least {self.minimum:g}")
        if self.maximum is not None and value > self.maximum:
            raise BadRequest(f"{name} must be at most {self.maximum:g}")
        return value


def check_text(name: str, value: str, max_length: int | None, min_length: int = 0,
               multiline: bool = False) -> str:
    if len(value) < min_length:
        raise BadRequest(f"{name} must not be empty" if min_length == 1
                         else f"{name} must be at least {min_length} characters")
    if max_length is not None and len(value) > max_length:
        raise BadRequest(f"{name} must be at most {max_length} characters")
    if any(unicodedata.category(c) == "Cc" and not (multiline and c in "\t\n\r")
           for c in value):
        raise BadRequest(f"{name} must not contain control characters")
    return value


@dataclass(frozen=True)
class Body:
    """A JSON object body. `noun` words the unknown-field error ("unknown setting 'x'")."""

    fields: dict[str, Field]
    noun: str = "field"
    description: str = ""
    example: dict | None = None  # shown in the document; schemathesis sends it first

    def schema(self) -> dict:
        out = {"type": "object", "additionalProperties": False,
               "properties": {name: f.schema() for name, f in self.fields.items()}}
        required = [name for name, f in self.fields.items() if f.required]
        if required:
            out["required"] = required
        if self.description:
            out["description"] = self.description
        return out

    def parse(self) -> dict:
        """The checked body; only the fields sent (PATCH semantics for optional ones)."""
        data = json_object()
        for name in data:
            if name not in self.fields:
                raise BadRequest(f"unknown {self.noun} {name[:50]!r}; known: {sorted(self.fields)}")
        for name, spec in self.fields.items():
            if spec.required and name not in data:
                raise BadRequest(f"{name} is required")
        return {name: self.fields[name].check(name, value) for name, value in data.items()}


def json_object() -> dict:
    if not request.is_json:
        raise UnsupportedMediaType("send the body as JSON (Content-Type: application/json)")
    try:
        data = request.get_json(silent=True)
    except RecursionError:  # json gives up on very deep nesting with this, not ValueError
        raise BadRequest("the body is nested too deeply") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return data


# Query parameters: absent means "not given"; present but empty is an error.


def query_int(name: str, default: int | None, minimum: int, maximum: int) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10:
        raise BadRequest(f"{name} must be a whole number from {minimum} to {maximum}")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise BadRequest(f"{name} must be a whole number from {minimum} to {maximum}")
    return value


def query_text(name: str, max_length: int, choices: tuple[str, ...] | None = None) -> str | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    check_text(name, raw, max_length, min_length=1)
    if choices and raw not in choices:
        raise BadRequest(f"{name} must be one of {list(choices)}")
    return raw


def query_bool(name: str) -> bool | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    if raw not in ("true", "false"):
        raise BadRequest(f"{name} must be true or false")
    return raw == "true"


_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)",
                      re.ASCII)


def query_time(name: str) -> datetime | None:
    """An RFC 3339 date-time (with its offset), as naive UTC like the database."""
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        if not _RFC3339.fullmatch(raw):
            raise ValueError(raw)
        value = datetime.fromisoformat(raw.upper()).astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):
        raise BadRequest(f"{name} must be a date-time like 2026-11-22T08:00:00Z") from None
    return value
