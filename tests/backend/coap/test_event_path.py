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


class Slow(resource.Resource):
    def __init__(self, delay_s: float):
        super().__init__()
        self.delay_s = delay_s

    async def render_post(self, request):
        await asyncio.sleep(self.delay_s)
        return aiocoap.Message(code=aiocoap.CHANGED, payload=b"done")


async def _datagrams_for_one_post(context_type, delay_s: float) -> list:
    """What a device sees for one confirmable POST whose answer takes `delay_s`: every
    datagram up to the answer (acknowledging a separate one, as a device would)."""
    import socket

    from devtools.bench import coapwire

    site = resource.Site()
    site.add_resource(["slow"], Slow(delay_s))
    server = await context_type.create_server_context(site, bind=("127.0.0.1", 0),
                                                      transports=["udp6"])
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        address = ("127.0.0.1", bound_udp_port(server))
        await loop.sock_sendto(sock, coapwire.encode_con_post(
            7, b"\x01\x02", coapwire.post_prefix("slow", 0), b"x"), address)
        seen = []
        while not seen or seen[-1].code == coapwire.EMPTY:
            seen.append(coapwire.parse(await asyncio.wait_for(loop.sock_recv(sock, 2048), 10)))
            if seen[-1].type == coapwire.CON:
                await loop.sock_sendto(sock, coapwire.encode_empty_ack(seen[-1].mid), address)
        return [(m.type, m.code) for m in seen]
    finally:
        sock.close()
        await server.shutdown()


def test_an_answer_within_half_a_second_goes_piggybacked_and_later_ones_separately():
    """LeanContext waits 0.5 s before an empty ACK (aiocoap: 0.1 s), so an answer that
    takes 0.25 s is one datagram, not an empty ACK, a confirmable answer and the device's
    ACK; a slower one still gets its empty ACK well before a device retransmits (2 s).
    Other contexts in the process keep aiocoap's 0.1 s."""
    from devtools.bench.coapwire import ACK, CON, EMPTY

    changed = int(aiocoap.CHANGED)

    async def all_three():
        return (await _datagrams_for_one_post(LeanContext, 0.25),
                await _datagrams_for_one_post(LeanContext, 1.0),
                await _datagrams_for_one_post(aiocoap.Context, 0.25))

    quick, slow, plain = asyncio.run(all_three())
    assert quick == [(ACK, changed)]
    assert slow == [(ACK, EMPTY), (CON, changed)]
    assert plain == [(ACK, EMPTY), (CON, changed)]
