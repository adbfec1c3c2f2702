"""The benchmark's load generator (devtools/bench/loadgen.py) against real servers on loopback.

Not timed: these check that every request is matched to its answer, that nothing is
lost at a low rate, and that answers of the real ingest verify (MAC, seq, result).
"""

import asyncio
import gc
import json

import aiocoap
import aiocoap.resource as resource
import pytest

from backend.runtime import bound_udp_port
from devtools.bench import coapwire
from devtools.bench.loadgen import Device, LoadGenerator, Workload, anonymous_devices
from devtools.bench.server import ServerProcess
from tests.conftest import DATABASES, make_world


def fleet_of(world_buttons) -> list[Device]:
    out = []
    for button in world_buttons:
        identity = json.loads((button.bundle_dir / "identity.json").read_text())
        out.append(Device(bytes.fromhex(identity["device_id"]), bytes.fromhex(identity["key"])))
    return out


def drive(port: int, workload: Workload, phases, **options):
    """Run the load generator's phases (kwargs of `run`) against a server; results."""

    async def run_all():
        gen = LoadGenerator("127.0.0.1", port, workload, **options)
        await gen.open()
        try:
            return [await gen.run(**phase) for phase in phases]
        finally:
            gen.close()

    return asyncio.run(run_all())


def test_wire_format_round_trip():
    prefix = coapwire.post_prefix()
    datagram = coapwire.encode_con_post(0x1234, b"\x01\x02\x03\x04", prefix, b"payload")
    parsed = coapwire.parse(datagram)
    assert (parsed.type, parsed.code, parsed.mid) == (coapwire.CON, coapwire.POST, 0x1234)
    assert (parsed.token, parsed.content_format, parsed.payload) == (
        b"\x01\x02\x03\x04", 17, b"payload")
    ack = coapwire.parse(coapwire.encode_empty_ack(7))
    assert (ack.type, ack.code, ack.mid, ack.token) == (coapwire.ACK, 0, 7, b"")


def test_every_request_answered_and_matched_by_a_bare_server():
    """Bare aiocoap in its own process (as `make bench` runs it), 64 source sockets."""

    workload = Workload(anonymous_devices(64), verify=False)
    workload.prepare(400)
    with ServerProcess("bare") as server:
        fixed, window = drive(server.port, workload,
                              [dict(duration_s=1.0, rate=200, drain_s=30),
                               dict(duration_s=0.5, window=16, drain_s=30)],
                              sockets=64, expected_codes=frozenset({68}))
    for result in (fixed, window):
        assert result.sent > 0
        assert result.answered == result.sent
        assert (result.lost, result.errors, result.unmatched) == (0, 0, 0)
        assert dict(result.codes) == {68: result.sent}
        assert len(result.latencies) == result.sent


def test_the_generator_does_not_collect_garbage_during_a_phase():
    """A collection of the generator's own heap (a fleet's prepared events) paused it for
    80-120 ms, and the answers arriving meanwhile carried that pause in their latency.
    One that does run (here forced) is reported in the phase's line."""
    workload = Workload(anonymous_devices(8), verify=False)
    workload.prepare(40)
    seen = []

    def on_answer(request, msg, answer):
        seen.append(gc.isenabled())
        if len(seen) == 1:
            gc.collect()  # explicit: runs even while automatic collection is off

    assert gc.isenabled()
    callbacks = list(gc.callbacks)
    with ServerProcess("bare") as server:
        [result] = drive(server.port, workload, [dict(duration_s=0.5, window=4, drain_s=30)],
                         sockets=8, expected_codes=frozenset({68}), on_answer=on_answer)
    assert seen and not any(seen)
    assert gc.isenabled() and gc.callbacks == callbacks  # given back after the phase
    assert result.summary()["client_gc"]["collections"] >= 1


@pytest.mark.parametrize("db_url", DATABASES, indirect=True)
def test_answers_of_the_real_ingest_verify(backend, tmp_path):
    """Every answer is MAC-checked against its request's tag, seq and CoAP code."""
    world = make_world(backend, tmp_path / "fleet", buttons=8)
    seen = []
    workload = Workload(fleet_of(world.buttons), verify=True)
    workload.prepare(40)  # five presses per device: one order, then suppressed
    [result] = drive(backend.coap_port, workload, [dict(duration_s=60, window=8, drain_s=60)],
                     expected_codes=frozenset({65, 67}),
                     on_answer=lambda request, msg, answer: seen.append(answer))
    assert result.sent == result.answered == 40
    assert (result.lost, result.errors, result.unmatched) == (0, 0, 0)
    # The first press of each device orders; later ones are suppressed while that
    # order is open (the test simulator may deliver it first: then a new order).
    assert set(result.codes) <= {65, 67} and result.codes[65] >= 8
    assert all(answer is not None and answer.order is not None for answer in seen)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("check_after", [False, True])
def test_an_answer_that_does_not_verify_is_an_error_checked_now_or_after(backend, tmp_path,
                                                                        check_after):
    """`make bench` checks the answers after each phase's CPU figures (check_after):
    every one is still checked, and one that fails counts in `errors` all the same."""
    world = make_world(backend, tmp_path / "fleet", buttons=4)
    workload = Workload(fleet_of(world.buttons), verify=True)
    workload.prepare(12)  # three presses per device
    workload.devices[0].key = bytes(32)  # its answers' MACs cannot verify with this key

    async def run():
        gen = LoadGenerator("127.0.0.1", backend.coap_port, workload,
                            expected_codes=frozenset({65, 67}), check_after=check_after)
        await gen.open()
        try:
            result = await gen.run(60, window=4, drain_s=60)
            kept = len(result.unchecked)
            gen.check(result)
            return result, kept
        finally:
            gen.close()

    result, kept = asyncio.run(run())
    assert result.sent == result.answered == 12 and (result.lost, result.unmatched) == (0, 0)
    assert kept == (12 if check_after else 0) and result.unchecked == []
    assert result.errors == 3  # device 0's three answers, and only those


def test_answers_later_than_the_empty_ack_delay_count_as_separate():
    """aiocoap sends an empty ACK after 0.1 s, then the answer on its own: the generator
    acknowledges it, and counts it in `separate` (what such answers cost the server)."""
    class Slow(resource.Resource):
        async def render_post(self, request):
            await asyncio.sleep(0.3)  # past aiocoap's EMPTY_ACK_DELAY
            return aiocoap.Message(code=aiocoap.CHANGED)

    class Quick(resource.Resource):
        async def render_post(self, request):
            return aiocoap.Message(code=aiocoap.CHANGED)

    async def run(render) -> object:
        site = resource.Site()
        site.add_resource(["ev"], render)
        context = await aiocoap.Context.create_server_context(
            site, bind=("127.0.0.1", 0), transports=["udp6"])
        workload = Workload(anonymous_devices(4), verify=False)
        workload.prepare(8)
        gen = LoadGenerator("127.0.0.1", bound_udp_port(context), workload, sockets=4,
                            expected_codes=frozenset({68}))
        await gen.open()
        try:
            return await gen.run(30, window=4, drain_s=30)
        finally:
            gen.close()
            await context.shutdown()

    slow = asyncio.run(run(Slow()))
    assert slow.answered == 8 and (slow.lost, slow.errors) == (0, 0)
    assert slow.separate == 8 and slow.summary()["separate"] == 8
    quick = asyncio.run(run(Quick()))
    assert quick.answered == 8 and "separate" not in quick.summary()


def test_a_socket_given_an_earlier_sockets_port_does_not_reuse_its_message_ids(monkeypatch):
    """RFC 7252 4.4: no Message ID twice with the same peer within EXCHANGE_LIFETIME.
    The second generator's sockets get the first one's ports (as the OS sometimes
    does) and the same random draw of starting IDs: had it started there, the server
    would answer its requests with the first generator's responses (deduplication)."""
    import random
    import socket

    from devtools.bench import loadgen

    workload = Workload(anonymous_devices(8), verify=False)
    workload.prepare(80)
    ports: list[int] = []
    real_socket = socket.socket

    class SamePorts(real_socket):
        def bind(self, address):
            host, port = address
            super().bind((host, ports[len(self._opened)] if self._reuse else port))
            self._opened.append(self.getsockname()[1])

    SamePorts._opened, SamePorts._reuse = ports, False
    monkeypatch.setattr(loadgen.socket, "socket", SamePorts)

    async def two_generators(port):
        results = []
        for reuse in (False, True):
            SamePorts._reuse = reuse
            if reuse:
                SamePorts._opened = []  # bind to `ports` in the same order
            gen = LoadGenerator("127.0.0.1", port, workload, sockets=8,
                                expected_codes=frozenset({68}))
            random.seed(7)  # the same starting IDs for both
            await gen.open()
            try:
                results.append(await gen.run(5, window=8, drain_s=1))
            finally:
                gen.close()
            await asyncio.sleep(0.1)  # the transports close their sockets on the loop
            workload.prepare(40)
        return results

    with ServerProcess("bare") as server:
        first, second = asyncio.run(two_generators(server.port))
    assert len(set(ports)) == 8 and SamePorts._opened == ports
    for result in (first, second):
        assert (result.answered, result.lost, result.unmatched, result.errors) == (
            result.sent, 0, 0, 0), result.summary()
    assert second.sent == 40
