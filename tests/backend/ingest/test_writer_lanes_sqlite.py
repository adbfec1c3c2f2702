"""Two writers on one SQLite file (two ingest processes; here a pipeline built with two
lanes, which `lanes_for` never gives SQLite): the second batch waits for
the write lock, then sees the first's commit.

The test holds SQLite's write lock (`BEGIN IMMEDIATE`, as the writers begin) from a
connection of its own while the same device's event and its retransmission go to both
lanes and the device's next event waits, until both lanes' children are seen sleeping
in SQLite's busy handler (/proc/PID/wchan); then it lets go. Whichever lane takes the lock
first orders; the other is decided after that commit, in bulk, with no retry: one
order, the same answer twice, the next event suppressed by the open order.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3

import pytest

from backend.storage import db
from tests.backend.ingest.test_ingest import press
from tests.backend.ingest.test_writer_lanes import (
    _two_lanes,
    _until,
    assert_ordered_once,
    drive,
)
from tests.conftest import make_world

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _sleeping_in_the_busy_handler(pid: int | None) -> bool:
    """Whether the writer child `pid` sleeps between tries for the write lock (SQLite's
    busy handler; a child waiting for its next batch sleeps in a pipe read instead)."""
    try:
        with open(f"/proc/{pid}/wchan") as f:
            return f.read().strip() == "hrtimer_nanosleep"
    except (OSError, TypeError):
        return False


def test_an_event_and_its_retransmission_in_both_lanes_order_once(settings, backend,
                                                                  tmp_path, caplog):
    button = make_world(backend, tmp_path / "fleet", buttons=1, hold_window_s=3600).buttons[0]
    first, following = press(button, 1), press(button, 2)
    pipeline = _two_lanes(settings)
    blocker = sqlite3.connect(db.sqlite_path(settings.db_url), isolation_level=None)

    async def scenario():
        blocker.execute("BEGIN IMMEDIATE")  # the lanes wait for it (busy_timeout 10 s)
        original = asyncio.ensure_future(pipeline.submit(first))
        await _until(lambda: pipeline.in_flight() == 1, "lane 0 has the event")
        retransmission = asyncio.ensure_future(pipeline.submit(first))
        await _until(lambda: pipeline.in_flight() == 2, "lane 1 has its copy")
        after = asyncio.ensure_future(pipeline.submit(following))
        await _until(lambda: pipeline.waiting() == 1, "the next event waits")
        await _until(lambda: all(_sleeping_in_the_busy_handler(pid)
                                 for pid in pipeline.pids), "both lanes wait for the lock")
        assert not original.done() and not retransmission.done()
        blocker.rollback()
        return await asyncio.wait_for(asyncio.gather(original, retransmission, after), 60)

    with caplog.at_level(logging.WARNING, logger="backend"):
        original, retransmission, after = drive(pipeline, scenario, blocker)
    assert_ordered_once(settings, caplog.text, button, (first, original),
                        retransmission, (following, after))


def test_sqlite_gets_one_lane_whatever_the_setting(settings):
    """SQLite's second lane would sleep in the busy handler while the lock idles."""
    from backend.ingest.writer_process import lanes_for

    assert lanes_for(settings.with_(writer_lanes=3)) == 1
    postgres = settings.with_(database_url="postgresql+psycopg://replenish@localhost/x",
                              writer_lanes=3)
    assert lanes_for(postgres) == 3


def test_fewer_than_one_lane_is_refused_in_one_line(settings):
    """An operator's REPLENISH_WRITER_LANES=0 (or a negative number) stops the start with
    the setting's name, instead of an ingest that never answers; a non-number is the
    settings parser's ConfigError, as for every integer setting."""
    from backend.config import Settings
    from backend.errors import ConfigError
    from backend.runtime import _pipeline

    for lanes in (0, -1):
        with pytest.raises(ConfigError, match=f"REPLENISH_WRITER_LANES must be 1 or more, "
                                              f"not {lanes}"):
            _pipeline(settings.with_(writer_lanes=lanes), None, None, None)
    with pytest.raises(ConfigError, match="REPLENISH_WRITER_LANES='two'"):
        Settings.from_env({**os.environ, "REPLENISH_WRITER_LANES": "two"})
