"""Ingest over real aiocoap on loopback, on SQLite and on a real PostgreSQL server."""

import json
import logging
import socket
import time

import pytest
from sqlalchemy import func, select

from backend import protocol
from backend.protocol import Kind, Result, WireEvent
from backend.storage.models import Device, Event, Order, OrderTransition
from devtools.bench import coapwire
from devtools.net import coap_post, coap_post_all
from tests.conftest import DATABASES

pytestmark = pytest.mark.parametrize("db_url", DATABASES, indirect=True)


def identity(device):
    data = json.loads((device.bundle_dir / "identity.json").read_text())
    return bytes.fromhex(data["key"]), bytes.fromhex(data["device_id"])


def press(device, seq, slot=0, **extra):
    key, kid = identity(device)
    return protocol.encode_event(key, kid, WireEvent(seq=seq, kind=Kind.PRESS, slot=slot,
                                                     **extra))


def answer_of(device, request, response):
    key, _ = identity(device)
    assert response.opt.content_format == 17
    answer = protocol.decode_answer(key, protocol.parse_signed_event(request).tag,
                                    response.payload)
    assert int(response.code) == answer.result, "CoAP code must equal the MAC'd result"
    return answer


def counts(backend):
    """Rows ingest writes. Transitions: only those into pending and confirmed (what
    ingest records); the order worker may already have moved the order on."""
    with backend.sessions() as session:
        rows = {model.__name__: session.scalar(select(func.count()).select_from(model))
                for model in (Event, Order)}
        rows["OrderTransition"] = session.scalar(
            select(func.count()).select_from(OrderTransition)
            .where(OrderTransition.to_state.in_(("pending", "confirmed"))))
        return rows


def test_first_press_creates_an_order_further_presses_are_suppressed(world, backend):
    button = world.buttons[0]
    requests = [press(button, seq) for seq in (1, 2, 3)]
    first, second, third = [answer_of(button, r, a) for r, a in
                            zip(requests, coap_post_all(world.event_url, requests))]
    assert first.result is Result.CREATED and first.state == "confirmed"  # no hold window
    assert second.result is Result.VALID and second.order == first.order
    assert third.result is Result.VALID and third.order == first.order
    assert counts(backend) == {"Event": 3, "Order": 1, "OrderTransition": 2}
    with backend.sessions() as session:
        order = session.get(Order, first.order)
        assert (order.product_sku, order.quantity) == ("DETERGENT-1L", 2)
        assert session.scalar(select(Device.last_seq).where(
            Device.device_id == button.device_id)) == 3


def test_retransmitted_event_gets_the_same_answer_and_no_second_order(world, backend):
    button = world.buttons[0]
    request = press(button, 7)
    responses = coap_post_all(world.event_url, [request, request, request])
    answers = [answer_of(button, request, r) for r in responses]
    assert answers[0].result is Result.CREATED
    assert answers[1] == answers[0] and answers[2] == answers[0]
    assert [r.payload for r in responses[1:]] == [responses[0].payload] * 2
    assert counts(backend) == {"Event": 1, "Order": 1, "OrderTransition": 2}


def test_each_button_orders_for_itself(world, backend):
    a, b = world.buttons
    ra, rb = press(a, 1), press(b, 1)
    answers = coap_post_all(world.event_url, [ra, rb])
    assert answer_of(a, ra, answers[0]).result is Result.CREATED
    assert answer_of(b, rb, answers[1]).result is Result.CREATED
    assert counts(backend)["Order"] == 2


def test_status_and_unconfigured_slot_are_recorded_without_order(world, backend):
    button = world.buttons[0]
    key, kid = identity(button)
    status = protocol.encode_event(key, kid, WireEvent(seq=1, kind=Kind.STATUS, slot=0,
                                                       battery_mv=2950, fw="0.1.0",
                                                       dropped=3))
    other_slot = press(button, 2, slot=5)
    answers = coap_post_all(world.event_url, [status, other_slot])
    assert answer_of(button, status, answers[0]).result is Result.CHANGED
    assert answer_of(button, other_slot, answers[1]).result is Result.CHANGED
    assert counts(backend) == {"Event": 2, "Order": 0, "OrderTransition": 0}
    with backend.sessions() as session:
        device = session.scalars(select(Device).where(
            Device.device_id == button.device_id)).one()
        assert (device.battery_mv, device.fw_version, device.dropped_events) == (
            2950, "0.1.0", 3)


def _refused(world, backend, caplog, payload, code, log_text, content_format=17):
    before = counts(backend)
    with caplog.at_level(logging.WARNING, logger="backend"):
        response = coap_post(world.event_url, payload, content_format)
    assert int(response.code) == code
    assert counts(backend) == before, "a refused event must change nothing"
    assert log_text in caplog.text
    return response


def test_wrong_mac_is_unauthorized_and_creates_nothing(world, backend, caplog):
    request = bytearray(press(world.buttons[0], 1))
    request[-1] ^= 0x01
    response = _refused(world, backend, caplog, bytes(request), Result.UNAUTHORIZED,
                        "bad MAC")
    assert response.payload == b"unknown device or bad MAC"


def test_unknown_device_is_unauthorized_and_looks_like_a_bad_mac(world, backend, caplog):
    stranger = protocol.encode_event(bytes(32), bytes.fromhex("0102030405060708"),
                                     WireEvent(seq=1, kind=Kind.PRESS, slot=0))
    response = _refused(world, backend, caplog, stranger, Result.UNAUTHORIZED,
                        "unknown device")
    assert response.payload == b"unknown device or bad MAC"


def test_replayed_sequence_number_is_a_conflict_with_last_seq(world, backend, caplog):
    button = world.buttons[0]
    coap_post_all(world.event_url, [press(button, 10)])
    replay = press(button, 4)  # a sequence number below the high-water mark
    response = _refused(world, backend, caplog, replay, Result.CONFLICT, "replayed")
    answer = answer_of(button, replay, response)
    assert answer.last_seq == 10


def test_same_seq_with_different_content_is_a_replay_not_a_retransmission(
        world, backend, caplog):
    button = world.buttons[0]
    coap_post_all(world.event_url, [press(button, 3)])
    altered = press(button, 3, qty=9)
    _refused(world, backend, caplog, altered, Result.CONFLICT, "replayed")


def test_malformed_cbor_is_bad_request_and_creates_nothing(world, backend, caplog):
    # Long enough for the whole diagnostic: a refusal is never bigger than its request
    # (backend/coap/amplification.py; tests/backend/coap/test_ratelimit.py checks tiny requests).
    response = _refused(world, backend, caplog, b"\xd1\x84\x43\xa1" + b"\xff" * 40,
                        Result.BAD_REQUEST, "malformed")
    assert response.payload == b"request is not valid CBOR"


def test_every_truncation_of_an_event_is_a_bad_request_and_changes_nothing(world, backend):
    request = press(world.buttons[0], 1)
    before = counts(backend)
    answers = coap_post_all(world.event_url, [request[:n] for n in range(1, len(request))])
    assert {int(a.code) for a in answers} == {Result.BAD_REQUEST}
    assert counts(backend) == before
    with backend.sessions() as session:
        assert session.scalar(select(Device.last_seq).where(
            Device.device_id == world.buttons[0].device_id)) == 0


def test_wrong_content_format_and_oversized_payload_are_refused(world, backend, caplog):
    _refused(world, backend, caplog, press(world.buttons[0], 1), Result.UNSUPPORTED_FORMAT,
             "content-format", content_format=60)
    _refused(world, backend, caplog, bytes(600), Result.TOO_LARGE, "600 bytes")


def test_a_block_wise_event_is_refused_and_changes_nothing(world, backend, caplog):
    """/ev skips aiocoap's block-wise assembly (an event fits one datagram), so a
    request that carries Block1 is refused rather than taken for a whole event."""
    port = int(world.event_url.rsplit(":", 1)[1].split("/")[0])
    datagram = (bytes([0x41, 0x02, 0x12, 0x34, 0x77])  # CON POST, mid, 1-byte token
                + bytes([0xB2]) + b"ev"  # Uri-Path
                + bytes([0x11, 17])  # Content-Format 17
                + bytes([0xD1, 2, 0x0A])  # Block1 (27): block 0, more, 64 bytes
                + b"\xff" + press(world.buttons[0], 1))
    before = counts(backend)
    with caplog.at_level(logging.WARNING, logger="backend"), \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        sock.sendto(datagram, ("127.0.0.1", port))
        answer = coapwire.parse(sock.recv(2048))
    assert answer.code == Result.TOO_LARGE and answer.token == b"\x77"
    assert counts(backend) == before, "a refused event must change nothing"
    assert "block-wise" in caplog.text


def test_unclaimed_device_is_forbidden_and_its_seq_is_consumed(world, backend, caplog):
    device = world.unclaimed
    request = press(device, 5)
    response = _refused(world, backend, caplog, request, Result.FORBIDDEN, "unclaimed")
    assert answer_of(device, request, response).result is Result.FORBIDDEN
    with backend.sessions() as session:
        assert session.scalar(select(Device.last_seq).where(
            Device.device_id == device.device_id)) == 5


def test_revoked_device_is_forbidden(world, backend, caplog):
    button = world.buttons[0]
    with backend.writer_sessions() as session, session.begin():
        session.scalars(select(Device).where(
            Device.device_id == button.device_id)).one().status = "revoked"
    _refused(world, backend, caplog, press(button, 1), Result.FORBIDDEN, "revoked")


def test_keys_never_reach_the_logs(world, backend, caplog):
    button = world.buttons[0]
    key, _ = identity(button)
    with caplog.at_level(logging.DEBUG):
        coap_post_all(world.event_url, [press(button, 1), press(button, 1)])
    assert key.hex() not in caplog.text and key.hex().upper() not in caplog.text


def test_orders_reach_delivered_through_every_state_once(world, backend):
    """The backend's own worker and this test's rounds race; no step is recorded twice."""
    button = world.buttons[0]
    request = press(button, 1)
    order_id = answer_of(button, request, coap_post(world.event_url, request)).order
    for _ in range(400):  # bounded: the simulator steps every 0.2 s
        backend.order_worker.run_once()
        with backend.sessions() as session:
            if session.get(Order, order_id).state == "delivered":
                break
        time.sleep(0.02)
    with backend.sessions() as session:
        path = [t.to_state for t in session.get(Order, order_id).history]
    assert path == ["pending", "confirmed", "placed", "shipped", "delivered"]


def test_concurrent_presses_share_commits_and_order_once_per_button(backend, tmp_path):
    """Twenty buttons pressed at once, twice: one order each, batched commits.

    A device sends one event at a time (it waits for the answer), so concurrency
    comes from many devices, as in a real fleet.
    """
    import asyncio

    import aiocoap

    from tests.conftest import make_world

    # The orders stay pending (hold window) between the rounds: with none, the worker
    # and the simulator could deliver some first on a slow host, and a second press
    # would rightly order again (seen once under load).
    world = make_world(backend, tmp_path / "fleet", buttons=20, hold_window_s=3600)

    async def send_all(requests):
        context = await aiocoap.Context.create_client_context()
        try:
            messages = [aiocoap.Message(code=aiocoap.POST, uri=world.event_url,
                                        payload=payload, content_format=17)
                        for _button, payload in requests]
            return await asyncio.wait_for(asyncio.gather(
                *(context.request(m).response for m in messages)), 120)
        finally:
            await context.shutdown()

    for seq, expected in ((1, Result.CREATED), (2, Result.VALID)):
        requests = [(button, press(button, seq)) for button in world.buttons]
        responses = asyncio.run(send_all(requests))
        answers = [answer_of(button, payload, response)
                   for (button, payload), response in zip(requests, responses)]
        assert [a.result for a in answers] == [expected] * 20
    with backend.sessions() as session:
        created = session.scalar(select(func.count()).select_from(OrderTransition)
                                 .where(OrderTransition.from_state.is_(None)))
    assert (counts(backend)["Event"], counts(backend)["Order"], created) == (40, 20, 20)


def _signed_map(device, fields: dict, kid_in_protected: bool = False,
                tagged: bool = True) -> bytes:
    """A COSE_Mac0 over an arbitrary event map, signed with the device's key, built by
    hand from RFC 9052 (not by backend.protocol), the way a third-party device would."""
    import hashlib
    import hmac

    import cbor2

    key, kid = identity(device)
    protected = cbor2.dumps({1: 5, **({4: kid} if kid_in_protected else {})})
    payload = cbor2.dumps(fields)
    mac = hmac.new(key, cbor2.dumps(["MAC0", protected, b"", payload]), hashlib.sha256)
    body = [protected, {} if kid_in_protected else {4: kid}, payload, mac.digest()]
    return cbor2.dumps(cbor2.CBORTag(17, body) if tagged else body)


def test_a_signed_event_of_an_unknown_kind_gets_a_signed_400_and_changes_nothing(
        world, backend, caplog):
    """A newer device's kind: the answer is MAC'd (the device can trust it and drops
    the event instead of resending it forever), nothing is stored, seq not consumed."""
    button = world.buttons[0]
    newer = _signed_map(button, {1: 5, 2: 9, 3: 0})
    response = _refused(world, backend, caplog, newer, Result.BAD_REQUEST,
                        "unknown event kind 9")
    answer = answer_of(button, newer, response)
    assert (answer.seq, answer.result) == (5, Result.BAD_REQUEST)
    with backend.sessions() as session:
        assert session.scalar(select(Device.last_seq).where(
            Device.device_id == button.device_id)) == 0


def test_a_signed_map_without_a_usable_seq_gets_a_plain_400(world, backend, caplog):
    response = _refused(world, backend, caplog, _signed_map(world.buttons[0], {2: 1, 3: 0}),
                        Result.BAD_REQUEST, "lacks seq")
    assert response.opt.content_format == 0 and b"lacks seq" in response.payload


def test_the_kid_may_sit_in_the_protected_header_and_the_tag_may_be_left_out(world, backend):
    """RFC 9052 allows either header bucket for the kid, and leaving out tag 17 where
    the content format says what the message is (docs/protocol.md)."""
    button = world.buttons[0]
    for seq, request in enumerate([_signed_map(button, {1: 1, 2: 3, 3: 0},
                                               kid_in_protected=True),
                                   _signed_map(button, {1: 2, 2: 3, 3: 0}, tagged=False)],
                                  start=1):
        response = coap_post(world.event_url, request)
        assert answer_of(button, request, response).result == Result.CHANGED, seq
    both = _kid_in_both(_signed_map(button, {1: 3, 2: 3, 3: 0}, kid_in_protected=True))
    assert int(coap_post(world.event_url, both).code) == Result.BAD_REQUEST


def _kid_in_both(request: bytes) -> bytes:
    """The request with the kid in both header buckets (COSE forbids it)."""
    import cbor2

    message = cbor2.loads(request)
    protected = cbor2.loads(message.value[0])
    return cbor2.dumps(cbor2.CBORTag(17, [message.value[0], {4: protected[4]},
                                          *message.value[2:]]))
