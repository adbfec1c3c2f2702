"""Overload: past the backlog limit the ingest answers 5.03 with Max-Age at once.

The writer is held up by another connection holding SQLite's write lock, so events
pile up in front of it. Those beyond `overload_max_waiting` must be answered 5.03 with
the configured Max-Age, with an answer smaller than the request (no amplification),
and must change nothing; the queued ones are answered 2.01 once the lock goes, and
the shed ones succeed when the devices send them again.
"""

import threading
import time

import aiocoap
import pytest
from sqlalchemy import select

from backend import protocol
from backend.protocol import Event as WireEvent
from backend.protocol import Kind
from backend.storage import db
from backend.storage.models import Device, Event
from devtools.net import coap_post_all, coap_post_each_from_own_port
from tests.backend.ingest.test_bench_group_commit import db_path, write_lock
from tests.conftest import BackendThread, make_world
from tests.devtools.test_bench_loadgen import fleet_of

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # holds its lock

CREATED, UNAVAILABLE = aiocoap.Code.CREATED, aiocoap.Code.SERVICE_UNAVAILABLE


def _stored(settings, device_id: str) -> tuple[int, int]:
    """(events recorded, last_seq) of a device."""
    with db.transaction(settings.db_url) as session:
        device = session.scalars(select(Device).where(Device.device_id == device_id)).one()
        events = session.scalars(select(Event).where(Event.device_pk == device.id)).all()
        return len(events), device.last_seq


def test_beyond_the_backlog_limit_events_are_shed_with_max_age(settings, tmp_path):
    settings = settings.with_(overload_max_waiting=4, overload_retry_s=7)
    with BackendThread(settings) as backend:
        devices = fleet_of(make_world(backend, tmp_path / "fleet", buttons=12).buttons)
        payloads = [protocol.encode_event(d.key, d.kid, WireEvent(seq=1, kind=Kind.PRESS, slot=0))
                    for d in devices]
        url = f"coap://127.0.0.1:{backend.coap_port}/ev"
        answers: list = []
        with write_lock(db_path(backend)) as blocker:
            sender = threading.Thread(
                target=lambda: answers.extend(coap_post_each_from_own_port(url, payloads)))
            sender.start()
            for _ in range(500):  # bounded: until the backlog is full
                if backend.pipeline.waiting() >= 4:
                    break
                time.sleep(0.01)
            time.sleep(0.5)  # the rest arrive and are shed while the writer is stuck
            blocker.execute("COMMIT")
            sender.join(90)
        assert len(answers) == 12

        codes = [answer.code for answer in answers]
        shed = [i for i, code in enumerate(codes) if code == UNAVAILABLE]
        created = [i for i, code in enumerate(codes) if code == CREATED]
        assert shed and created and len(shed) + len(created) == 12, codes
        for i in shed:
            assert answers[i].opt.max_age == 7
            assert answers[i].payload == b"overloaded"
            # The whole datagram (header, token, options, marker, payload) is smaller
            # than the event it answers: shedding cannot amplify.
            answer = answers[i]
            datagram = 4 + len(answer.token) + len(answer.opt.encode()) + 1 + len(answer.payload)
            assert datagram < len(payloads[i])
            assert _stored(settings, devices[i].kid.hex()) == (0, 0)  # nothing changed
        for i in created:
            assert _stored(settings, devices[i].kid.hex()) == (1, 1)

        # The devices send the same events again later (one at a time: the backlog
        # limit is 4): now they are taken.
        again = coap_post_all(url, [payloads[i] for i in shed])
        assert [answer.code for answer in again] == [CREATED] * len(shed)
        for i in shed:
            assert _stored(settings, devices[i].kid.hex()) == (1, 1)
