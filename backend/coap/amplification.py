"""No amplification: a refusal is never bigger than the request that caused it.

CoAP runs over UDP, so a request's source address can be forged, and whatever the
server answers goes to that address. Every answer to an *unauthenticated* request
is therefore kept at most as big as the request (RFC 7252 §11.3):

- error answers without a MAC (4.00, 4.01, 4.04, 4.05, 4.13, 4.15, 5.03, the /fw
  refusals) lose as much of their diagnostic text as needed; the code says the
  rest. The budget keeps 4 bytes for the empty ACK that precedes a separate answer;
- such answers, when they go separately (the writer took longer than the 0.5 s
  empty-ACK delay, coap/event_path.py), are sent non-confirmable: a forged source
  never acknowledges, and a confirmable answer would be sent up to five times;
- requests to anything but /ev take a token from the per-source bucket
  (coap/ratelimit.py; /ev takes its own in EventResource). /.well-known/core, the one
  success answer to an unauthenticated request and bigger than a minimal GET, is
  answered only to REPLENISH_DISCOVERY_FROM (server.LocalDiscovery; docs/security.md).

Authenticated answers (Content-Format 17, MAC'd under the device key, and /fw
content behind its token) are left alone.
"""

from __future__ import annotations

import aiocoap
import aiocoap.error
from aiocoap.numbers.types import NON

from backend import protocol
from backend.coap.event_path import DirectEventSite
from backend.coap.ratelimit import RateLimiter

_HEADER_BYTES = 4
_EMPTY_ACK_BYTES = 4


class GuardedSite(DirectEventSite):
    """The site with every answer passed through `bounded` on its way out."""

    def __init__(self, limiter: RateLimiter):
        super().__init__()
        self._limiter = limiter

    async def render_to_pipe(self, pipe) -> None:
        request = pipe.request
        add_response, add_exception = pipe.add_response, pipe.add_exception

        def bounded_response(response, is_last=False):
            add_response(bounded(request, response), is_last)

        def bounded_exception(exception):
            if isinstance(exception, aiocoap.error.RenderableError):  # 4.04, 4.05, ...
                bounded_response(exception.to_message(), is_last=True)
            else:
                add_exception(exception)  # a bug: aiocoap logs it and answers 5.00

        pipe.add_response, pipe.add_exception = bounded_response, bounded_exception
        if self.is_event(request):  # asked once: /ev takes its token in EventResource
            await self.render_event(pipe)
            return
        limited = self._limiter.check(request)
        if limited is not None:
            bounded_response(limited, is_last=True)
            return
        await self.render_generic(pipe)


def bounded(request: aiocoap.Message, response: aiocoap.Message) -> aiocoap.Message:
    """`response`, trimmed to the request's size and non-confirmable when it answers
    an unauthenticated request with an error."""
    if response.code.is_successful() or (
            response.opt.content_format == protocol.CONTENT_FORMAT_COSE_MAC0):
        return response
    response.mtype = NON  # when piggybacked, aiocoap makes it the ACK anyway
    received = _HEADER_BYTES + len(request.token) + len(request.opt.encode()) + (
        1 + len(request.payload) if request.payload else 0)
    overhead = (_EMPTY_ACK_BYTES + _HEADER_BYTES + len(request.token)
                + len(response.opt.encode()) + 1)
    budget = received - overhead
    if len(response.payload) > budget:
        response.payload = (response.payload[:max(0, budget)]
                            .decode("utf-8", "ignore").encode())
    return response
