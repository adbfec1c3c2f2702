"""Every CoAP refusal the server sends is built here.

Modelled on aiocoap's renderable errors (`aiocoap.error.RenderableError`): a refusal is
an exception that knows its response, so a handler raises it (or builds it) and one
place decides what a refusal looks like: the code, an optional Max-Age (how long the
device should wait before trying again), and a short plain-text diagnostic (RFC 7252
§5.5.2) or none. Refusals are never MAC'd: a device cannot trust them, only wait.
"""

from __future__ import annotations

import aiocoap
from aiocoap.error import RenderableError
from aiocoap.numbers.codes import Code

from backend.protocol import Result

_TEXT_PLAIN = 0


class Refusal(RenderableError):
    def __init__(self, code: Result | Code, text: str = "", max_age_s: int | None = None):
        super().__init__(text)
        self.code = Code(int(code))
        self.text = text
        self.max_age_s = max_age_s

    def to_message(self) -> aiocoap.Message:
        message = (aiocoap.Message(code=self.code, payload=self.text.encode(),
                                   content_format=_TEXT_PLAIN)
                   if self.text else aiocoap.Message(code=self.code))
        if self.max_age_s is not None:
            message.opt.max_age = self.max_age_s
        return message


def refusal(code: Result | Code, text: str = "", max_age_s: int | None = None
            ) -> aiocoap.Message:
    """The response for a refusal (handlers that return rather than raise)."""
    return Refusal(code, text, max_age_s).to_message()
