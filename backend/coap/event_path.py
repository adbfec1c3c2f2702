"""The two aiocoap settings of the event path, /ev (also given to the bench's bare
server, so that `ratio_ingest_vs_bare_event_path_settings` compares like with like).

A py-spy profile of the event loop at saturation showed 44 % of its time in aiocoap's
generic request handling that /ev never needs.
"""

from __future__ import annotations

import aiocoap.resource as resource

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
