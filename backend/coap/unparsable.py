"""Datagrams aiocoap cannot decode must not flood the log.

aiocoap's `Message.decode` raises UnicodeDecodeError (not its UnparsableMessage) for a
Uri-Path or Uri-Query option that is not UTF-8. Its UDP transport does not catch it,
so the datagram is dropped unanswered (good) and asyncio logs a full traceback at
ERROR for each one (bad: anyone can fill the log with 7-byte datagrams, before any of
our code or rate limits runs). This loop exception handler turns those into at most
one WARNING line per second with a count; every other exception goes to the handler
that was there before.
"""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger(__name__)

_EVERY_S = 1.0


class QuietUnparsable:
    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._previous = loop.get_exception_handler()
        self._last_log = float("-inf")
        self._unlogged = 0
        self.dropped = 0

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.set_exception_handler(self)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        if not _from_aiocoap_decode(context.get("exception")):
            if self._previous is not None:
                self._previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        self.dropped += 1
        self._unlogged += 1
        now = time.monotonic()
        if now - self._last_log >= _EVERY_S:
            log.warning("dropped %d datagram(s) that CoAP cannot parse (options that are "
                        "not UTF-8)", self._unlogged)
            self._last_log, self._unlogged = now, 0


def _from_aiocoap_decode(exc) -> bool:
    """A UnicodeDecodeError raised inside aiocoap (not one of ours)."""
    if not isinstance(exc, UnicodeDecodeError):
        return False
    tb = exc.__traceback__
    while tb is not None:
        if "/aiocoap/" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False
