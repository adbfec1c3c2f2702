"""Group commit, shown by holding SQLite's write lock while events arrive."""

import asyncio
import logging
import sqlite3
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from backend.ingest.pipeline import BatchWriter, GroupCommitPipeline
from backend.protocol import Result
from backend.storage import db
from backend.storage.models import Device, Event
from tests.backend.ingest.test_ingest import press
from tests.conftest import DATABASES, make_world


def thread_in_begin(thread_id: int) -> bool:
    """That thread is inside backend.storage.db's BEGIN (IMMEDIATE) right now: blocked
    on the lock the test holds (read from its stack)."""
    frame = sys._current_frames().get(thread_id)
    while frame is not None:
        if frame.f_code is db._sqlite_begin.__code__:
            return True
        frame = frame.f_back
    return False


def process_in_busy_wait(pid: int) -> bool:
    """The writer process sleeps in the kernel: with its batch taken (it waits on its
    pipe otherwise, and runs no timers), that is SQLite's busy handler in BEGIN
    IMMEDIATE (Linux /proc)."""
    return "nanosleep" in Path(f"/proc/{pid}/wchan").read_text()


def _state(pipeline, tasks) -> str:
    """What the pipeline, the writer and the backend's loop were doing (this wait ran out
    twice on loaded CI hosts, with no log line: the next time says where things stood)."""
    import traceback

    answered = [t.result().result for t in tasks if t.done() and not t.exception()]
    loop = getattr(pipeline, "_loop", None)  # the backend's loop, in its own thread
    frame = sys._current_frames().get(getattr(loop, "_thread_id", None))
    pid = getattr(pipeline, "pid", None)
    wchan = Path(f"/proc/{pid}/wchan").read_text() if pid else "-"
    return (f"waiting {pipeline.waiting()}, in flight "
            f"{getattr(pipeline, 'in_flight', lambda: 0)() > 0}, answered {answered}, "
            f"writer wchan {wchan!r}; backend loop at:\n"
            + "".join(traceback.format_stack(frame) if frame else ["?"]))


@pytest.mark.parametrize("form", ["process", "thread"])
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # holds SQLite's lock
def test_events_waiting_behind_a_commit_share_the_next_one(world, backend, tmp_path, form):
    """Group commit: while the writer waits for the database, arrivals queue up and
    are then decided and committed together, each answered only after that commit.
    The test waits (bounded) until the writer is seen blocked in BEGIN IMMEDIATE."""
    fleet = make_world(backend, tmp_path / "fleet", buttons=20)
    requests = [(button, press(button, 1)) for button in fleet.buttons]
    if form == "thread":
        pipeline = GroupCommitPipeline(backend.writer_sessions, backend.keyring)
        pipeline.start()
        blocked = lambda: thread_in_begin(pipeline._thread.ident)  # noqa: E731
    else:
        pipeline = backend.pipeline
        blocked = lambda: (pipeline.in_flight() > 0  # noqa: E731
                           and process_in_busy_wait(pipeline.pid))
    blocker = sqlite3.connect(world.settings.db_url.split("///", 1)[1], isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the writer's next BEGIN IMMEDIATE must wait
    batches_before = pipeline.batches

    async def submit_all():
        tasks = [asyncio.ensure_future(pipeline.submit(payload))
                 for _button, payload in requests]
        # bounded (30 s; a loaded CI host needed more than 5 once): until the writer
        # waits in BEGIN IMMEDIATE
        for _ in range(6000):
            if pipeline.waiting() < len(tasks) and blocked():
                break
            await asyncio.sleep(0.005)
        assert blocked(), "the writer never reached BEGIN IMMEDIATE: " + _state(
            pipeline, tasks)
        for _ in range(3):  # run what the writer handed this loop before its BEGIN
            await asyncio.sleep(0)  # (an early answer: its future, then its task)
        assert not any(t.done() for t in tasks), "answered before its commit"
        blocker.execute("COMMIT")
        return await asyncio.wait_for(asyncio.gather(*tasks), 60)

    try:
        replies = asyncio.run(submit_all())
    finally:
        blocker.close()
        if form == "thread":
            pipeline.stop()
    assert [r.result for r in replies] == [Result.CREATED] * 20
    assert pipeline.batches - batches_before <= 2


@pytest.mark.parametrize("db_url", DATABASES, indirect=True)
def test_a_mixed_batch_is_decided_together_without_falling_back(world, backend):
    """The shared-batch path (driver-level statements, backend/ingest/batch_sql.py) must
    decide an ordinary batch itself on both databases. Falling back to one savepoint
    per event gives the same answers, only several times slower, so only this counter
    would notice it."""
    writer = BatchWriter(backend.writer_sessions, backend.keyring)
    first, second = world.buttons[0], world.buttons[1]
    again = press(first, 1)
    replies = writer.commit([again, press(second, 1), again, press(first, 2),
                             press(second, 1, qty=3)])
    assert [r.result for r in replies] == [Result.CREATED, Result.CREATED, Result.CREATED,
                                           Result.VALID, Result.CONFLICT]
    assert writer.fallbacks == 0
    with backend.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 3
        assert sorted(session.scalars(select(Device.last_seq).where(Device.device_id.in_(
            [first.device_id, second.device_id])))) == [1, 2]


def _commit_falling_back(writer: BatchWriter, caplog, requests: list[bytes]):
    """`writer.commit(requests)`, which must have decided the batch again one event at a
    time, once, and said so."""
    with caplog.at_level(logging.WARNING, logger="backend"):
        replies = writer.commit(requests)
    assert writer.fallbacks == 1
    assert "deciding each on its own" in caplog.text
    return replies


@pytest.mark.parametrize("db_url", DATABASES, indirect=True)
def test_an_event_that_raises_is_answered_503_and_the_rest_of_its_batch_commits(
        backend, tmp_path, monkeypatch, caplog):
    """One event raising (a bug, not the database) must not take its batch down: the
    batch is decided again with a savepoint per event, that event answered 5.03 and
    recorded nowhere, the others committed."""
    from backend.ingest import lookups as ingest  # where decide's lookups call fleet

    writer = BatchWriter(backend.writer_sessions, backend.keyring)
    good, bad, other = make_world(backend, tmp_path / "fleet", buttons=3).buttons
    real_on_event = ingest.fleet.on_event

    def on_event(session, device, event, **batch):
        if device.device_id == bad.device_id:
            raise RuntimeError("boom")
        return real_on_event(session, device, event, **batch)

    monkeypatch.setattr(ingest.fleet, "on_event", on_event)
    replies = _commit_falling_back(writer, caplog, [press(good, 1), press(bad, 1),
                                                    press(other, 1)])
    assert [r.result for r in replies] == [Result.CREATED, Result.UNAVAILABLE, Result.CREATED]
    with backend.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 2
        assert session.scalar(select(Device.last_seq).where(
            Device.device_id == bad.device_id)) == 0, "the failed event changed nothing"


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_connection_broken_between_batches_costs_a_retry_not_the_batch(
        world, backend, caplog):
    """The writer's engine sends no pre-ping (one statement per batch saved): when the
    server has dropped the pooled connection since the last batch, the next batch's
    first statement fails with OperationalError and the whole batch is decided again
    on a new connection, still together (no fallback), and answered as usual."""
    import psycopg

    engine = db.make_engine(world.settings.db_url, pre_ping=False)  # the writer's
    writer = BatchWriter(db.make_sessionmaker(engine, writer=True), backend.keyring)
    first, second = world.buttons[0], world.buttons[1]
    try:
        assert [r.result for r in writer.commit([press(first, 1)])] == [Result.CREATED]
        with writer._sessions() as session:  # the pool's one connection, the writer's
            pid = session.connection().connection.dbapi_connection.info.backend_pid
        admin = world.settings.db_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(admin, autocommit=True) as conn:
            assert conn.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone()[0]
            for _ in range(500):  # bounded: until that server process has gone
                if not conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s",
                                    [pid]).fetchone():
                    break
                time.sleep(0.01)
        with caplog.at_level(logging.WARNING, logger="backend"):
            replies = writer.commit([press(second, 1), press(first, 2)])
    finally:
        engine.dispose()
    assert [r.result for r in replies] == [Result.CREATED, Result.VALID]
    assert writer.fallbacks == 0, "a broken connection is the database's, not an event's"
    assert "attempt 1/3" in caplog.text
    assert "deciding each on its own" not in caplog.text, "taken for an event's bug"
    with backend.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 3


@pytest.mark.parametrize("db_url", DATABASES, indirect=True)
def test_a_database_error_in_the_batch_writes_falls_back_and_records_each_event_once(
        world, backend, monkeypatch, caplog):
    """A statement of the batch's writes that the database refuses (here the events sent
    twice: a unique violation) fails at the end of the writes; on PostgreSQL that is
    the end of the pipeline that carries them (batch_sql.writes), with the transaction
    aborted. Nothing of the batch may stay: it is decided again, one savepoint per
    event, and every event is recorded once."""
    from backend.ingest import batch_sql

    writer = BatchWriter(backend.writer_sessions, backend.keyring)
    real_insert = batch_sql.BatchStatements.insert_events

    def insert_twice(self, cursor, rows):
        real_insert(self, cursor, rows)
        real_insert(self, cursor, rows)

    monkeypatch.setattr(batch_sql.BatchStatements, "insert_events", insert_twice)
    first, second = world.buttons[0], world.buttons[1]
    replies = _commit_falling_back(writer, caplog, [press(first, 1), press(second, 1),
                                                    press(first, 2)])
    assert [r.result for r in replies] == [Result.CREATED, Result.CREATED, Result.VALID]
    with backend.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 3
        assert sorted(session.scalars(select(Device.last_seq).where(Device.device_id.in_(
            [first.device_id, second.device_id])))) == [1, 2]
