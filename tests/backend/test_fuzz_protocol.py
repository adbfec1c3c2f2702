"""Property-based fuzzing of the backend's decoders of untrusted bytes, in process and
through the live server.

In process (hypothesis): aiocoap's message parser as the server's transport calls it,
`protocol.parse_signed_event` (CBOR + COSE_Mac0 envelope) and `protocol.decode_event`
raise only their documented exceptions, or return something well-formed.

Live (a real backend, aiocoap on loopback, the writer process): hostile datagrams and
hostile events inside well-formed POSTs. The server keeps serving, sends back fewer
bytes than it got, and stores no event its device did not sign.
"""

import random
import socket

import aiocoap
import aiocoap.error
import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from backend import protocol
from backend.errors import MalformedEvent
from backend.protocol import Event as WireEvent
from backend.protocol import Kind
from backend.storage.models import Event
from devtools.bench import coapwire
from devtools.faults import hostile
from tests.conftest import make_world
from tests.devtools.test_bench_loadgen import fleet_of

FUZZ = settings(max_examples=400, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
cbor_leaf = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
             | st.binary(max_size=40) | st.text(max_size=12) | st.floats())
cbor_value = st.recursive(cbor_leaf, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(
    st.integers(-5, 20) | st.text(max_size=3), inner, max_size=6), max_leaves=25)


@FUZZ
@given(st.binary(max_size=hostile.MAX_INPUT_BYTES))
def test_coap_parser_raises_only_unparsable(data):
    try:
        message = aiocoap.Message.decode(data)
    except aiocoap.error.UnparsableMessage:
        return
    except UnicodeDecodeError:
        return  # known: a Uri-Path/Query not UTF-8; the transport drops it (security.md)
    message.opt.content_format, message.opt.block2, len(message.payload)


@FUZZ
@given(st.binary(max_size=protocol.MAX_PAYLOAD_BYTES))
def test_envelope_parser_on_random_bytes(data):
    try:
        signed = protocol.parse_signed_event(data)
    except MalformedEvent:
        return
    assert len(signed.kid) == protocol.DEVICE_ID_BYTES and len(signed.tag) == 32


@FUZZ
@given(cbor_value, cbor_value, cbor_value, st.binary(max_size=40), st.booleans())
def test_envelope_parser_on_cose_shaped_cbor(protected, unprotected, payload, tag, tagged):
    body = [cbor2.dumps(protected) if isinstance(protected, dict) else protected,
            unprotected, payload, tag]
    data = cbor2.dumps(cbor2.CBORTag(17, body) if tagged else body)
    try:
        signed = protocol.parse_signed_event(data)
    except MalformedEvent:
        return
    assert isinstance(signed.payload, bytes) and len(signed.tag) == 32


@FUZZ
@given(st.dictionaries(st.integers(-2, 20) | st.text(max_size=2), cbor_value, max_size=10))
def test_event_decoder_on_hostile_maps(fields):
    try:
        event = protocol.decode_event(cbor2.dumps(fields))
    except MalformedEvent:
        return
    assert event.seq >= 1 and event.slot >= 0 and event.kind in set(Kind)


def _send_all(port: int, datagrams: list[bytes]) -> int:
    """Send each datagram from one socket, paced; the bytes that came back. Nothing
    is acknowledged, as from a forged source: retransmissions would count too."""
    received = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        for n, datagram in enumerate(datagrams):
            sock.sendto(datagram, ("127.0.0.1", port))
            if n % 50 == 49:
                received += _drain(sock, 0.05)
        return received + _drain(sock, 6.0)  # past the first retransmission timeout


def _drain(sock, quiet_s: float) -> int:
    received = 0
    sock.settimeout(quiet_s)
    for _ in range(1_000_000):
        try:
            received += len(sock.recv(4096))
        except socket.timeout:
            break
    return received


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_live_server_survives_hostile_input_and_stores_only_signed_events(
        backend, tmp_path):
    device = fleet_of(make_world(backend, tmp_path / "fleet", buttons=1).buttons)[0]
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    signed = [protocol.encode_event(device.key, device.kid,
                                    WireEvent(seq=seq, kind=Kind.PRESS, slot=0))
              for seq in (1000, 2000, 3000)]
    pool = signed + hostile.samples()
    events = [hostile.mutate(rng, rng.choice(signed), pool)[:protocol.MAX_PAYLOAD_BYTES]
              for _ in range(600)]
    prefix = coapwire.post_prefix()
    datagrams = [coapwire.encode_con_post(n, rng.randbytes(rng.randint(0, 8)), prefix, e)
                 for n, e in enumerate(events)]
    datagrams += hostile.inputs(600, seed)  # whole datagrams, mostly not CoAP at all
    sent = sum(len(d) for d in datagrams)
    received = _send_all(backend.coap_port, datagrams)
    print(f"seed {seed}: {len(datagrams)} datagrams, {sent} bytes in, {received} out")
    assert received <= sent, seed
    with backend.sessions() as session:
        stored = session.execute(select(Event.seq, Event.tag)).all()
    genuine = {(1000 * (n + 1), s[-32:]) for n, s in enumerate(signed)}
    assert {(seq, bytes(tag)) for seq, tag in stored} <= genuine, seed
    # Still serving: the device's next press is answered and verifies.
    press = protocol.encode_event(device.key, device.kid,
                                  WireEvent(seq=5000, kind=Kind.PRESS, slot=0))
    from devtools.net import coap_post

    answer = coap_post(f"coap://127.0.0.1:{backend.coap_port}/ev", press)
    decoded = protocol.decode_answer(device.key, press[-32:], answer.payload)
    assert decoded.seq == 5000 and int(answer.code) == decoded.result
