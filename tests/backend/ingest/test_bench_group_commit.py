"""Group commit, through the real CoAP ingest and the benchmark's load generator.

- No answer precedes its commit: while SQLite's write lock is held the writer cannot
  commit, so no answer may arrive; and whenever an answer arrives, a separate
  connection must already see the committed event with the answered result.
- A batch whose COMMIT fails answers every member 5.03 and records none of them
  (device high-water marks included); the same events succeed when sent again.
"""

import asyncio
import contextlib
import sqlite3

import pytest

from devtools.bench.loadgen import LoadGenerator, Workload
from tests.conftest import make_world
from tests.devtools.test_bench_loadgen import drive, fleet_of

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # holds its lock

CREATED, UNAVAILABLE = 65, 163

# COMMIT-time failure: a deferred foreign key that an insert into events violates.
# Each event's savepoint succeeds; only the batch's COMMIT fails.
POISON = """
CREATE TABLE bench_missing (id INTEGER PRIMARY KEY);
CREATE TABLE bench_poison (ref INTEGER REFERENCES bench_missing(id)
                           DEFERRABLE INITIALLY DEFERRED);
CREATE TRIGGER bench_poison_events AFTER INSERT ON events
BEGIN INSERT INTO bench_poison VALUES (-1); END;
"""


def db_path(backend) -> str:
    return backend.settings.db_url.split("///", 1)[1]


def committed(path: str, device_id: str, seq: int):
    """(result of the event, device last_seq) as another connection sees them now."""
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT e.result FROM events e JOIN devices d ON d.id = e.device_pk "
                           "WHERE d.device_id = ? AND e.seq = ?", (device_id, seq)).fetchone()
        last_seq = conn.execute("SELECT last_seq FROM devices WHERE device_id = ?",
                                (device_id,)).fetchone()[0]
    return (row[0] if row else None), last_seq


async def send_while_locked(backend, workload, expected, on_answer, blocker):
    """Send every queued event while `blocker` holds the write lock; check that nothing
    is answered until it lets go; return the load generator's result."""
    answers = []

    def record(request, msg, answer):
        answers.append(msg.code)
        if on_answer is not None:
            on_answer(request, msg, answer)

    gen = LoadGenerator("127.0.0.1", backend.coap_port, workload, expected_codes=expected,
                        on_answer=record)
    await gen.open()
    answered_while_locked = []
    arrived = []
    submit = backend.pipeline.submit

    async def counting_submit(request):  # counts what reached the pipeline
        arrived.append(request)
        return await submit(request)

    backend.pipeline.submit = counting_submit
    try:
        total = workload.pending()
        run = asyncio.ensure_future(gen.run(0.1, window=total, drain_s=60))
        for _ in range(1000):  # bounded: until every event waits for the writer
            await asyncio.sleep(0.01)
            if len(arrived) >= total:
                break
        await asyncio.sleep(0.3)  # the writer holds a batch, blocked in BEGIN IMMEDIATE
        answered_while_locked.append(run.done())
        answered_while_locked.append(len(answers))
        blocker.execute("COMMIT")
        result = await asyncio.wait_for(run, 90)
    finally:
        del backend.pipeline.submit
        gen.close()
    assert len(arrived) == total
    assert answered_while_locked == [False, 0], "answered while the commit could not happen"
    return result


@contextlib.contextmanager
def write_lock(path: str, script: str = ""):
    """A connection that (after running `script`) holds SQLite's write lock."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        if script:
            conn.executescript(script)
        conn.execute("BEGIN IMMEDIATE")  # the writer's next BEGIN IMMEDIATE must wait
        yield conn
    finally:
        conn.close()


def presses(backend, out, count=20):
    """`count` claimed, configured devices with one press each, encoded."""
    devices = fleet_of(make_world(backend, out, buttons=count).buttons)
    workload = Workload(devices)
    workload.prepare(count)
    return devices, workload


def test_no_answer_precedes_its_commit(world, backend, tmp_path):
    devices, workload = presses(backend, tmp_path / "fleet")
    path = db_path(backend)
    checks = []

    def on_answer(request, msg, answer):
        # At the moment the answer arrives, the event must be committed already.
        checks.append((msg.code, committed(path, devices[request.device].kid.hex(),
                                           request.seq)))

    batches_before = backend.pipeline.batches
    with write_lock(path) as blocker:
        result = asyncio.run(send_while_locked(backend, workload, frozenset({CREATED}),
                                               on_answer, blocker))
    assert result.sent == result.answered == 20
    assert (result.lost, result.errors) == (0, 0)
    assert checks == [(CREATED, (CREATED, 1))] * 20
    assert backend.pipeline.batches - batches_before <= 2  # they waited together


def test_a_batch_that_fails_to_commit_answers_all_5_03_and_records_none(
        world, backend, tmp_path):
    devices, workload = presses(backend, tmp_path / "fleet")
    requests = [q[0] for q in workload.queues]
    path = db_path(backend)
    with write_lock(path, POISON) as blocker:
        failed = asyncio.run(send_while_locked(backend, workload, frozenset({UNAVAILABLE}),
                                               None, blocker))
    assert failed.sent == failed.answered == 20
    assert (failed.lost, failed.errors) == (0, 0)
    assert dict(failed.codes) == {UNAVAILABLE: 20}
    for request in requests:  # nothing of the batch was recorded
        assert committed(path, devices[request.device].kid.hex(), request.seq) == (None, 0)

    with sqlite3.connect(path, isolation_level=None) as cure:
        cure.execute("DROP TRIGGER bench_poison_events")
    for request in requests:  # the devices retry with the same events, in new messages
        workload.queues[request.device].append(request)

    [retried] = drive(backend.coap_port, workload, [dict(duration_s=0.1, window=20, drain_s=60)],
                      expected_codes=frozenset({CREATED}))
    assert retried.answered == 20 and dict(retried.codes) == {CREATED: 20}
    assert retried.errors == 0
    for request in requests:
        assert committed(path, devices[request.device].kid.hex(), request.seq) == (
            CREATED, request.seq)
