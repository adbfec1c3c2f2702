"""The group-commit writer in its own process: crashes lose nothing.

- Killed after its commit but before answering: the device gets 5.03, sends the same
  event again and gets the answer that was committed (one order, not two).
- Killed while idle: a new writer process takes over and the next event is answered.
- Its log lines reach this process's logging (checked in tests/backend/ingest/test_ingest.py too).
"""

import logging
import os
import signal
import time

import aiocoap
from sqlalchemy import select

from backend import protocol
from backend.protocol import Event as WireEvent
from backend.protocol import Kind, Result
from backend.storage import db
from backend.storage.models import Order
from devtools.net import coap_post
from tests.conftest import make_world
from tests.devtools.test_bench_loadgen import fleet_of
from tests.engine_helpers import events_and_orders


def _press(device, seq: int) -> bytes:
    return protocol.encode_event(device.key, device.kid, WireEvent(seq=seq, kind=Kind.PRESS, slot=0))


def test_killed_between_commit_and_answer_the_retransmission_gets_the_same_answer(
        settings, backend, tmp_path, caplog):
    device = fleet_of(make_world(backend, tmp_path / "fleet", buttons=1, hold_window_s=3600).buttons)[0]
    url = f"coap://127.0.0.1:{backend.coap_port}/ev"
    first_writer = backend.pipeline.pid
    backend.pipeline.failpoint = "exit-after-commit"
    payload = _press(device, 1)
    with caplog.at_level(logging.ERROR, logger="backend"):
        lost = coap_post(url, payload)
    assert lost.code == aiocoap.Code.SERVICE_UNAVAILABLE
    assert "ingest writer process exited (70)" in caplog.text
    assert events_and_orders(settings.db_url) == (1, 1)  # committed before the crash

    again = coap_post(url, payload)  # the device retransmits the same event
    assert again.code == aiocoap.Code.CREATED
    answer = protocol.decode_answer(device.key, payload[-protocol.TAG_BYTES:], again.payload)
    assert answer.result == Result.CREATED and answer.seq == 1
    with db.transaction(settings.db_url) as session:
        assert answer.order == session.scalar(select(Order.id))
    assert events_and_orders(settings.db_url) == (1, 1)  # the same answer, not a second order
    assert backend.pipeline.pid != first_writer and backend.pipeline.restarts == 1


def test_a_killed_idle_writer_is_replaced(settings, backend, tmp_path):
    device = fleet_of(make_world(backend, tmp_path / "fleet", buttons=1, hold_window_s=3600).buttons)[0]
    url = f"coap://127.0.0.1:{backend.coap_port}/ev"
    assert coap_post(url, _press(device, 1)).code == aiocoap.Code.CREATED
    killed = backend.pipeline.pid
    os.kill(killed, signal.SIGKILL)
    for _ in range(200):  # bounded: until the new writer is up
        if backend.pipeline.pid not in (None, killed):
            break
        time.sleep(0.05)
    assert backend.pipeline.pid not in (None, killed)
    second = coap_post(url, _press(device, 2))
    assert second.code == aiocoap.Code.VALID  # suppressed by the open order from seq 1
    assert events_and_orders(settings.db_url) == (2, 1)
    assert backend.pipeline.restarts == 1
