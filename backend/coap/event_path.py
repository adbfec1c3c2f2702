"""The aiocoap settings of the event path, /ev (also given to the bench's bare
server, so that `ratio_ingest_vs_bare_event_path_settings` compares like with like).

A py-spy profile of the event loop at saturation showed 44 % of its time in aiocoap's
generic request handling that /ev never needs; a later CPU profile of the fleet day,
14 % in naming each request's task (`LeanContext`), and about 2 % in telling whether a
request came in on a multicast address. Under load, answers that took over aiocoap's
0.1 s went separately (three datagrams instead of one): `LeanContext` waits 0.5 s
before an empty ACK. aiocoap is pinned (pyproject.toml):
`LeanContext` and `DirectEventSite` lean on its internals.
"""

from __future__ import annotations

import aiocoap
import aiocoap.resource as resource
from aiocoap.messagemanager import MessageManager
from aiocoap.numbers.constants import TransportTuning
from aiocoap.pipe import error_to_message, run_driving_pipe
from aiocoap.transports.udp6 import UDP6EndpointAddress

from backend import protocol

EVENT_PATH = (protocol.EVENT_PATH,)


class OneDatagramResource(resource.Resource):
    """A resource whose requests and answers each fit one datagram. aiocoap's default
    assembles Block1 and caches Block2 for every request: a tenth of the event loop's
    time per event, for nothing. Such a resource refuses a block-wise request itself."""

    async def needs_blockwise_assembly(self, request) -> bool:
        return False


class DirectEventSite(resource.Site):
    """Hands /ev straight to its resource: the generic dispatch copies the whole
    request to strip its path, which cost as much per event as all of the resource's
    own work in the event loop. Everything else goes the generic way."""

    def is_event(self, request) -> bool:
        return request.opt.uri_path == EVENT_PATH and request.opt.uri_path_abbrev is None

    async def render_to_pipe(self, pipe) -> None:
        if self.is_event(pipe.request):
            await self.render_event(pipe)
        else:
            await self.render_generic(pipe)

    def render_event(self, pipe):
        """/ev's resource renders `pipe` (the caller asked `is_event`; a coroutine)."""
        return self._resources[EVENT_PATH].render_to_pipe(pipe)

    def render_generic(self, pipe):
        """aiocoap's own dispatch renders `pipe` (a coroutine)."""
        return super().render_to_pipe(pipe)


class LeanContext(aiocoap.Context):
    """aiocoap's server context, rendering each request in a task named plainly.

    aiocoap names that task "Rendering for <the request's repr>", and the repr formats
    the remote's addresses and interface name: 14 % of the event loop's CPU per event
    on the fleet day, for a name nobody reads. Everything else is aiocoap's own
    `Context.render_to_pipe` (0.4.17)."""

    def render_to_pipe(self, pipe) -> None:
        run_driving_pipe(error_to_message(pipe, self.log), self._render_to_pipe(pipe),
                         name="Rendering a request")

    @classmethod
    async def create_server_context(cls, *args, **kwargs):
        """aiocoap's, with its UDP remotes telling multicast from the address bytes
        (`is_multicast_locally`; for every UDP6 remote of the process, like aiocoap's),
        and this context's requests answered piggybacked for up to `EMPTY_ACK_DELAY_S`."""
        UDP6EndpointAddress.is_multicast_locally = property(is_multicast_locally)
        context = await super().create_server_context(*args, **kwargs)
        for interface in context.request_interfaces:
            manager = getattr(interface, "token_interface", None)
            if isinstance(manager, MessageManager):
                _wait_longer_before_an_empty_ack(manager)
        return context


EMPTY_ACK_DELAY_S = 0.5


class _ServerTuning(TransportTuning):
    """aiocoap sends an empty ACK when an answer takes over 0.1 s, then the answer as a
    confirmable message of its own, which the device must acknowledge: three datagrams
    instead of one, and retransmission state in the server. Under load, when group
    commits queue, that extra work came exactly when the event loop had none to spare
    (on PostgreSQL's fleet day half the answers went separately and the loop's CPU per
    event rose by two thirds). A device retransmits after ACK_TIMEOUT, 2 s at the
    least (RFC 7252; firmware/replenish/client.py): an empty ACK at 0.5 s still stops
    that, with 1.5 s to spare for the round trip."""

    EMPTY_ACK_DELAY = EMPTY_ACK_DELAY_S


_SERVER_TUNING = _ServerTuning()


def _wait_longer_before_an_empty_ack(manager: MessageManager) -> None:
    """Give each request this manager receives `_SERVER_TUNING` before aiocoap reads
    its EMPTY_ACK_DELAY (only this context's: other contexts in the process keep
    aiocoap's 0.1 s)."""
    process_request = manager._process_request

    def process_with_server_tuning(request):
        request.transport_tuning = _SERVER_TUNING
        process_request(request)

    manager._process_request = process_with_server_tuning


_V4_MAPPED = bytes(10) + b"\xff\xff"  # ::ffff:0:0/96


def is_multicast_locally(remote) -> bool:
    """Whether `remote` (a UDP6 remote) came in on a multicast address: ff00::/8, or
    224.0.0.0/4 when v4-mapped, read from its pktinfo's 16 address bytes. aiocoap asks
    for every request it answers (`as_response_address`), and its own property formats
    the address as text and parses it again: 4.4 us of the event loop's CPU per event,
    0.2 us this way."""
    address = remote.pktinfo[:16]
    if address[:12] == _V4_MAPPED:
        return 224 <= address[12] <= 239
    return address[0] == 0xFF
