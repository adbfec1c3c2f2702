"""The event path's aiocoap settings (backend/coap/event_path.py) keep aiocoap's answers.

`LeanContext` replaces aiocoap's `Context.render_to_pipe` to name each request's task
plainly; what that method must keep doing is turning a resource's exception into an
error answer (a device that got silence would retransmit for 93 s).
"""

import asyncio

import aiocoap
import aiocoap.resource as resource

from backend.coap.event_path import LeanContext
from backend.runtime import bound_udp_port


class Answers(resource.Resource):
    async def render_post(self, request):
        return aiocoap.Message(code=aiocoap.CHANGED, payload=request.payload[::-1])


class Raises(resource.Resource):
    async def render_post(self, request):
        raise RuntimeError("a bug in a resource")


async def _post_both() -> tuple[aiocoap.Message, aiocoap.Message]:
    site = resource.Site()
    site.add_resource(["ok"], Answers())
    site.add_resource(["bug"], Raises())
    server = await LeanContext.create_server_context(site, bind=("127.0.0.1", 0),
                                                     transports=["udp6"])
    client = await aiocoap.Context.create_client_context()
    try:
        base = f"coap://127.0.0.1:{bound_udp_port(server)}"
        answers = []
        for path in ("ok", "bug"):
            request = aiocoap.Message(code=aiocoap.POST, uri=f"{base}/{path}", payload=b"abc")
            answers.append(await asyncio.wait_for(client.request(request).response, 30))
        return answers[0], answers[1]
    finally:
        await client.shutdown()
        await server.shutdown()


def test_a_lean_context_answers_and_turns_a_resource_error_into_5_00():
    ok, bug = asyncio.run(_post_both())
    assert (ok.code, ok.payload) == (aiocoap.CHANGED, b"cba")
    assert bug.code == aiocoap.INTERNAL_SERVER_ERROR
