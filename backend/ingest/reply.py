"""What the CoAP layer sends back for one event, and its form across the writer pipe."""

from __future__ import annotations

from dataclasses import dataclass

from backend.protocol import Result


@dataclass(frozen=True)
class Reply:
    """What the CoAP layer sends back: a code and an (authenticated or text) payload."""

    result: Result
    payload: bytes
    authenticated: bool

    @classmethod
    def text(cls, result: Result, message: str) -> Reply:
        return cls(result, message.encode(), False)

    # The writer process sends replies through a pipe with `marshal` (plain tuples:
    # no pickling of classes, and cheap for 64 at a time).
    def to_wire(self) -> tuple[int, bytes, bool]:
        return int(self.result), self.payload, self.authenticated

    @classmethod
    def from_wire(cls, wire: tuple[int, bytes, bool]) -> Reply:
        code, payload, authenticated = wire
        return cls(Result(code), payload, authenticated)
