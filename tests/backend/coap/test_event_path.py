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


def test_multicast_is_told_from_the_address_bytes_as_aiocoap_tells_it():
    """`is_multicast_locally` (LeanContext installs it) against aiocoap's own property,
    on the edges of ff00::/8 and 224.0.0.0/4 (v4-mapped) and on random addresses."""
    import ipaddress
    import random
    import socket

    from aiocoap.transports.udp6 import UDP6EndpointAddress, _in6_pktinfo

    from backend.coap.event_path import is_multicast_locally

    class Interface:
        pass

    interface = Interface()
    rng = random.Random(18)
    addresses = ["::ffff:224.0.0.0", "::ffff:239.255.255.255", "::ffff:223.255.255.255",
                 "::ffff:240.0.0.0", "::ffff:127.0.0.1", "ff00::", "ff02::fd", "feff::1",
                 "::1", "::", "::fffe:e000:1", "64:ff9b::e000:1"]
    addresses += [str(ipaddress.IPv6Address(rng.getrandbits(128))) for _ in range(2000)]
    addresses += [f"::ffff:{rng.randrange(256)}.{rng.randrange(256)}.0.1" for _ in range(2000)]
    for address in addresses:
        remote = UDP6EndpointAddress(("::1", 5683, 0, 0), interface, pktinfo=_in6_pktinfo.pack(
            socket.inet_pton(socket.AF_INET6, address), 0))
        assert is_multicast_locally(remote) == _aiocoaps_is_multicast_locally(remote), address


def _aiocoaps_is_multicast_locally(remote) -> bool:
    """aiocoap 0.4.17's property, as it reads (LeanContext replaces it in the process)."""
    import ipaddress

    return ipaddress.ip_address(remote._plainaddress_local()).is_multicast
