"""The aiocoap site: thin resources that hand bytes to the pipeline and answer."""

from __future__ import annotations

import logging

import aiocoap
import aiocoap.resource as resource
from aiocoap.numbers.codes import Code

from backend import protocol
from backend.coap.pipeline import GroupCommitPipeline
from backend.fleet_coap import FW_PATH, FirmwareResource
from backend.protocol import Result

log = logging.getLogger(__name__)


class EventResource(resource.Resource):
    """POST /ev: one signed event in, one (MAC'd) answer out, after the commit."""

    rt = "replenish.event"
    ct = protocol.CONTENT_FORMAT_COSE_MAC0

    def __init__(self, pipeline: GroupCommitPipeline):
        super().__init__()
        self._pipeline = pipeline

    def get_link_description(self):
        return {**super().get_link_description(), "ct": str(self.ct)}

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        if request.opt.content_format != protocol.CONTENT_FORMAT_COSE_MAC0:
            log.warning("refused event from %s: content-format %s", request.remote.hostinfo,
                        request.opt.content_format)
            return _text(Result.UNSUPPORTED_FORMAT, "content-format must be 17 (cose-mac0)")
        if len(request.payload) > protocol.MAX_PAYLOAD_BYTES:
            log.warning("refused event from %s: %d bytes", request.remote.hostinfo,
                        len(request.payload))
            return _text(Result.TOO_LARGE, f"event over {protocol.MAX_PAYLOAD_BYTES} bytes")
        reply = await self._pipeline.submit(request.payload)
        if not reply.authenticated:
            return _text(reply.result, reply.payload.decode())
        return aiocoap.Message(code=Code(int(reply.result)), payload=reply.payload,
                               content_format=protocol.CONTENT_FORMAT_COSE_MAC0)


def _text(result: Result, message: str) -> aiocoap.Message:
    return aiocoap.Message(code=Code(int(result)), payload=message.encode(),
                           content_format=0)


def build_site(pipeline: GroupCommitPipeline) -> resource.Site:
    site = resource.Site()
    site.add_resource([".well-known", "core"],
                      resource.WKCResource(site.get_resources_as_linkheader))
    site.add_resource([protocol.EVENT_PATH], EventResource(pipeline))
    site.add_resource([FW_PATH], FirmwareResource.for_pipeline(pipeline))
    return site
