"""Two writer lanes on PostgreSQL: two batches in flight, each on its own connection.

Each test holds PostgreSQL row (or table) locks from a connection of its own, so that
both lanes are seen waiting inside their transactions at once (polled, bounded, in
`pg_stat_activity`), then lets go and checks what was answered and committed:

- the same device's event and its retransmission in both lanes: one order, the same
  answer twice, the device's next event (waiting meanwhile) suppressed by it, and no
  fallback (the second lane waits for the device's row, then sees the first's commit);
- two devices of one household with a daily limit of one: one order, the other
  answered "blocked" (limits_lock.py), not two orders; each batch told to the metrics
  once, with its own outcomes;
- a lane's child killed with a batch in flight while the other lane has one too: 5.03
  for the dead lane's batch only, the other answered from its commit, the lane
  respawned, and the retransmission ordered once;
- stop() with two batches in flight and one waiting: all answered 5.03, both batches
  committed, their retransmissions answered from the database.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import psycopg
import pytest
from sqlalchemy import select, update

from backend import protocol
from backend.ingest.writer_process import ProcessPipeline
from backend.orders.policies import Blocked
from backend.protocol import Result
from backend.storage import db
from backend.storage.models import Household, Order
from tests.backend.ingest.test_ingest import identity, press
from tests.conftest import make_world
from tests.worker_helpers import events_and_orders


@pytest.fixture
def db_url(postgres_server):
    """PostgreSQL only: SQLite has one write lock, so one lane (`lanes_for`)."""
    return postgres_server.new_database()


def _connect(settings, **options) -> psycopg.Connection:
    return psycopg.connect(settings.db_url.replace("+psycopg", ""), **options)


def _lock_waiters(watcher: psycopg.Connection) -> int:
    return watcher.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock'").fetchone()[0]


async def _until(condition, what: str) -> None:
    for _ in range(2000):  # bounded: 20 s
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting until {what}")


def _answer(device, request: bytes, reply) -> protocol.Answer:
    key, _kid = identity(device)
    assert reply.authenticated, reply
    return protocol.decode_answer(key, protocol.parse_signed_event(request).tag,
                                  reply.payload)


def _lock_devices(blocker: psycopg.Connection, devices) -> None:
    ids = sorted(identity(device)[1].hex() for device in devices)
    blocker.execute("SELECT id FROM devices WHERE device_id = ANY(%s) FOR UPDATE", [ids])


def drive(pipeline: ProcessPipeline, scenario, *connections):
    """`scenario()`'s result, run with `pipeline` started and stopped after it; the
    test's own `connections` (the lock holder, the watcher) closed whatever happened."""
    async def started():
        pipeline.start()
        try:
            return await scenario()
        finally:
            pipeline.stop()

    try:
        return asyncio.run(started())
    finally:
        for connection in connections:
            connection.close()


def _two_lanes(settings, on_batch=None) -> ProcessPipeline:
    # Batches of one: a second batch goes in flight as soon as one (a full batch) waits.
    return ProcessPipeline(settings, max_batch=1, lanes=2, on_batch=on_batch)


def test_an_event_and_its_retransmission_in_both_lanes_order_once(settings, backend,
                                                                  tmp_path, caplog):
    button = make_world(backend, tmp_path / "fleet", buttons=1, hold_window_s=3600).buttons[0]
    first, following = press(button, 1), press(button, 2)
    pipeline = _two_lanes(settings)
    blocker, watcher = _connect(settings), _connect(settings, autocommit=True)

    async def scenario():
        _lock_devices(blocker, [button])
        original = asyncio.ensure_future(pipeline.submit(first))
        await _until(lambda: _lock_waiters(watcher) == 1, "lane 0 waits for the device")
        retransmission = asyncio.ensure_future(pipeline.submit(first))
        await _until(lambda: _lock_waiters(watcher) == 2, "lane 1 waits too")
        after = asyncio.ensure_future(pipeline.submit(following))
        await _until(lambda: pipeline.waiting() == 1, "the next event waits")
        assert pipeline.in_flight() == 2 and not original.done()
        blocker.rollback()
        return await asyncio.wait_for(asyncio.gather(original, retransmission, after), 60)

    with caplog.at_level(logging.WARNING, logger="backend"):
        original, retransmission, after = drive(pipeline, scenario, blocker, watcher)
    assert_ordered_once(settings, caplog.text, button, (first, original),
                        retransmission, (following, after))


def assert_ordered_once(settings, log_text: str, button, first, retransmission, following):
    """An event (`first`: request, reply) and its retransmission's reply decided in both
    lanes, and the device's next event (`following`) after them."""
    # Decided in bulk, the second lane after the first's commit: not rescued by a unique
    # violation and the per-event fallback, nor by a retry.
    assert "deciding each on its own" not in log_text
    assert "failed (attempt" not in log_text
    created = _answer(button, *first)
    assert created.result == Result.CREATED
    assert retransmission == first[1]  # the same answer, byte for byte
    assert _answer(button, *following).result == Result.VALID  # its open order
    with db.transaction(settings.db_url) as session:
        assert session.scalars(select(Order.id)).all() == [created.order]
    assert events_and_orders(settings.db_url) == (2, 1)


def test_two_devices_of_one_household_in_both_lanes_keep_its_daily_limit(settings, backend,
                                                                         tmp_path):
    world = make_world(backend, tmp_path / "fleet", buttons=2, hold_window_s=3600)
    with db.transaction(settings.db_url) as session:
        session.execute(update(Household).where(Household.id == world.household_id)
                        .values(max_orders_per_day=1))
    requests = [press(button, 1) for button in world.buttons]
    metrics = []  # what each batch tells the metrics (backend/metrics.py)
    pipeline = _two_lanes(settings, on_batch=lambda outcomes, commit_s: metrics.append(
        (outcomes, commit_s is not None)))
    blocker, watcher = _connect(settings), _connect(settings, autocommit=True)

    async def scenario():
        # Orders cannot be inserted meanwhile, but they can be counted: without the
        # household's lock both lanes would count none and both would order.
        blocker.execute("LOCK TABLE orders IN SHARE ROW EXCLUSIVE MODE")
        tasks = [asyncio.ensure_future(pipeline.submit(requests[0]))]
        await _until(lambda: _lock_waiters(watcher) == 1, "lane 0 waits")
        tasks.append(asyncio.ensure_future(pipeline.submit(requests[1])))
        await _until(lambda: _lock_waiters(watcher) == 2, "lane 1 waits too")
        assert pipeline.in_flight() == 2
        blocker.rollback()
        return await asyncio.wait_for(asyncio.gather(*tasks), 60)

    replies = drive(pipeline, scenario, blocker, watcher)
    answers = [_answer(b, r, reply) for b, r, reply in zip(world.buttons, requests, replies)]
    assert sorted(a.result for a in answers) == [Result.CREATED, Result.CHANGED]
    assert [a.blocked for a in answers if a.result == Result.CHANGED] == [Blocked.DAILY_LIMIT]
    assert events_and_orders(settings.db_url) == (2, 1)
    # Once per batch, each lane's with its own outcomes and commit time.
    assert sorted(metrics, key=str) == [({"ordered": 1}, True), ({"recorded": 1}, True)]


def test_a_lane_killed_mid_batch_answers_only_its_own_batch_5_03(settings, backend,
                                                                 tmp_path):
    buttons = make_world(backend, tmp_path / "fleet", buttons=2, hold_window_s=3600).buttons
    requests = [press(button, 1) for button in buttons]
    pipeline = _two_lanes(settings)
    blocker, watcher = _connect(settings), _connect(settings, autocommit=True)

    async def scenario():
        _lock_devices(blocker, buttons)
        survivor = asyncio.ensure_future(pipeline.submit(requests[0]))
        await _until(lambda: _lock_waiters(watcher) == 1, "lane 0 waits")
        victim = asyncio.ensure_future(pipeline.submit(requests[1]))
        await _until(lambda: _lock_waiters(watcher) == 2, "lane 1 waits too")
        first_pids = pipeline.pids
        os.kill(first_pids[1], signal.SIGKILL)
        lost = await asyncio.wait_for(victim, 30)
        assert not survivor.done(), "the other lane's batch answered early"
        await _until(lambda: pipeline.pids[1] not in (None, first_pids[1]),
                     "lane 1 is respawned")
        assert pipeline.pids[0] == first_pids[0] and pipeline.restarts == 1
        blocker.rollback()
        kept = await asyncio.wait_for(survivor, 60)
        again = await asyncio.wait_for(pipeline.submit(requests[1]), 60)
        return lost, kept, again

    lost, kept, again = drive(pipeline, scenario, blocker, watcher)
    assert lost.result == Result.UNAVAILABLE and not lost.authenticated
    assert _answer(buttons[0], requests[0], kept).result == Result.CREATED
    assert _answer(buttons[1], requests[1], again).result == Result.CREATED
    assert events_and_orders(settings.db_url) == (2, 2)


def test_stop_with_two_batches_in_flight_answers_all_and_loses_nothing(settings, backend,
                                                                      tmp_path):
    buttons = make_world(backend, tmp_path / "fleet", buttons=3, hold_window_s=3600).buttons
    requests = [press(button, 1) for button in buttons]
    pipeline = _two_lanes(settings)
    blocker, watcher = _connect(settings), _connect(settings, autocommit=True)

    async def scenario():
        pipeline.start()
        _lock_devices(blocker, buttons[:2])
        tasks = [asyncio.ensure_future(pipeline.submit(requests[0]))]
        await _until(lambda: _lock_waiters(watcher) == 1, "lane 0 waits")
        tasks.append(asyncio.ensure_future(pipeline.submit(requests[1])))
        await _until(lambda: _lock_waiters(watcher) == 2, "lane 1 waits too")
        tasks.append(asyncio.ensure_future(pipeline.submit(requests[2])))
        await _until(lambda: pipeline.waiting() == 1, "the third event waits")
        assert pipeline.in_flight() == 2
        writers = pipeline.pids
        blocker.rollback()  # both batches commit; this loop reads no answer before stop()
        pipeline.stop()
        await asyncio.sleep(0)  # the tasks take their futures' results
        return [task.result() for task in tasks], writers

    try:
        replies, writers = asyncio.run(scenario())
    finally:
        blocker.close()
        watcher.close()
    assert [reply.result for reply in replies] == [Result.UNAVAILABLE] * 3
    assert pipeline.pids == [None, None]
    for pid in writers:  # reaped, not left running
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert events_and_orders(settings.db_url) == (2, 2)  # both batches committed

    again = _two_lanes(settings)

    async def retransmit():
        again.start()
        try:
            return await asyncio.wait_for(
                asyncio.gather(*(again.submit(request) for request in requests)), 60)
        finally:
            again.stop()

    answers = [_answer(b, r, reply)
               for b, r, reply in zip(buttons, requests, asyncio.run(retransmit()))]
    assert [a.result for a in answers] == [Result.CREATED] * 3
    with db.transaction(settings.db_url) as session:
        assert sorted(session.scalars(select(Order.id))) == sorted(a.order for a in answers)


def test_a_second_batch_goes_in_flight_once_a_full_batch_waits(settings, backend,
                                                                tmp_path):
    """At moderate load one batch at a time: each batch costs a commit and its round
    trips, so the idle lane waits until a full batch (2 here) is worth them."""
    buttons = make_world(backend, tmp_path / "fleet", buttons=3, hold_window_s=3600).buttons
    requests = [press(button, 1) for button in buttons]
    pipeline = ProcessPipeline(settings, max_batch=2, lanes=2)
    blocker, watcher = _connect(settings), _connect(settings, autocommit=True)

    async def scenario():
        _lock_devices(blocker, buttons)
        tasks = [asyncio.ensure_future(pipeline.submit(requests[0]))]
        await _until(lambda: _lock_waiters(watcher) == 1, "lane 0 waits")
        tasks.append(asyncio.ensure_future(pipeline.submit(requests[1])))
        for _ in range(5):  # what submit scheduled has run
            await asyncio.sleep(0)
        assert (pipeline.in_flight(), pipeline.waiting()) == (1, 1)
        tasks.append(asyncio.ensure_future(pipeline.submit(requests[2])))
        await _until(lambda: pipeline.in_flight() == 3, "lane 1 takes both")
        assert pipeline.waiting() == 0
        blocker.rollback()
        return await asyncio.wait_for(asyncio.gather(*tasks), 60)

    replies = drive(pipeline, scenario, blocker, watcher)
    assert [reply.result for reply in replies] == [Result.CREATED] * 3
    assert events_and_orders(settings.db_url) == (3, 3)
