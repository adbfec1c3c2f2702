"""The three aiocoap settings of the event path, /ev (also given to the bench's bare
server, so that `ratio_ingest_vs_bare_event_path_settings` compares like with like).

A py-spy profile of the event loop at saturation showed 44 % of its time in aiocoap's
generic request handling that /ev never needs; a later CPU profile of the fleet day,
14 % in naming each request's task (`LeanContext`). aiocoap is pinned (pyproject.toml):
`LeanContext` and `DirectEventSite` lean on its internals.
"""

from __future__ import annotations

import aiocoap
import aiocoap.resource as resource
from aiocoap.pipe import error_to_message, run_driving_pipe

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
            await self._resources[EVENT_PATH].render_to_pipe(pipe)
        else:
            await super().render_to_pipe(pipe)

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
