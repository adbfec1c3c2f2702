"""On PostgreSQL the group-commit writer's statements run on generic plans
(`db.make_engine(generic_plans=True)` in the writer process): each prepared statement
is planned once, not again for every batch. Under PostgreSQL's default the batch's
reads were planned anew for each batch, because the length of their arrays changes the
estimate; that planning was about a fifth of PostgreSQL's CPU per event at batches of 8
(docs/performance.md). Counted by pg_stat_statements, which needs a server of its own
(it is loaded at start only)."""

from __future__ import annotations

import asyncio

import pytest

from backend.ingest.writer_process import ProcessPipeline
from backend.protocol import Result
from devtools.bench.pg_server_time import SETTINGS, ServerTime
from devtools.postgres import PostgresServer
from tests.backend.ingest.test_ingest import press
from tests.backend.ingest.test_writer_lanes import drive
from tests.conftest import make_world

BATCHES = 16


@pytest.fixture(scope="module")
def statistics_server():
    server = PostgresServer(SETTINGS)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def db_url(statistics_server):
    return statistics_server.new_database()


def test_the_writers_batch_reads_are_planned_once_not_for_every_batch(settings, backend,
                                                                     tmp_path):
    buttons = make_world(backend, tmp_path / "fleet", buttons=8).buttons
    timing = ServerTime(settings.db_url)
    pipeline = ProcessPipeline(settings, lanes=1)

    async def batches():
        answers = []
        for seq in range(1, BATCHES + 1):
            size = 1 + (seq * 5) % len(buttons)  # batches of 1 to 8 presses, mixed
            answers += await asyncio.gather(*(pipeline.submit(press(button, seq))
                                              for button in buttons[:size]))
        return answers

    try:
        timing.reset()
        answers = drive(pipeline, batches)
        report = timing.per_event(len(answers))
    finally:
        timing.close()
    assert {reply.result for reply in answers} <= {Result.CREATED, Result.VALID}
    devices = report["SELECT devices"]
    assert devices["calls"] == BATCHES
    # psycopg prepares a statement at its fifth execution: planned for each of the first
    # five, then once. Custom plans would plan every one of the 16.
    assert devices["plans"] <= 6, report
