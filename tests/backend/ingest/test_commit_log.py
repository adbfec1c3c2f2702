"""The ingest's INFO line about what it committed (backend/ingest/commit_log.py): a
batch at a time while batches are an interval apart, one line per interval under load,
and nothing held back for ever: the interval's timer, or the stop, writes the rest."""

from __future__ import annotations

import logging
import re
import time

from backend.ingest.commit_log import CommitLog

LOGGER = "backend.ingest.commit_log"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def _events_in(lines: list[str]) -> int:
    return sum(int(re.match(r"committed (\d+) events", line).group(1)) for line in lines)


def test_a_quiet_ingest_logs_each_batch_as_it_commits(caplog):
    clock = Clock()
    commits = CommitLog(interval_s=10, clock=clock)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        commits.batch({"ordered": 1})
        clock.now += 30
        commits.batch({"recorded": 2, "already_ordered": 1})
    assert _lines(caplog) == ["committed 1 events: 1 ordered",
                              "committed 3 events: 1 already_ordered, 2 recorded"]
    commits.flush()  # nothing held: nothing more
    assert len(_lines(caplog)) == 2


def test_a_busy_ingest_logs_one_line_per_interval_with_every_event(caplog):
    clock = Clock()
    commits = CommitLog(interval_s=10, clock=clock)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        commits.batch({"recorded": 5})  # the first batch of a burst: at once
        for _ in range(300):  # 3 s of batches every 10 ms: held
            clock.now += 0.01
            commits.batch({"recorded": 60, "ordered": 1})
        assert len(_lines(caplog)) == 1
        clock.now += 7.1
        commits.batch({"recorded": 4})  # past the interval: this one writes the sum
        commits.flush()  # the stop: nothing left to write
    lines = _lines(caplog)
    assert lines[1] == "committed 18304 events in 301 batches over 10.1 s: 300 ordered, 18004 recorded"
    assert len(lines) == 2 and _events_in(lines) == 5 + 300 * 61 + 4


def test_what_an_interval_holds_is_written_without_another_batch(caplog):
    """The last batches of a burst: the interval's timer writes them (a real timer,
    a short interval, a bounded wait)."""
    commits = CommitLog(interval_s=0.2)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        commits.batch({"ordered": 1})
        commits.batch({"recorded": 2})
        commits.batch({"recorded": 3})
        for _ in range(100):  # bounded: 5 s
            if len(_lines(caplog)) == 2:
                break
            time.sleep(0.05)
    lines = _lines(caplog)
    assert len(lines) == 2 and lines[1].startswith("committed 5 events in 2 batches over ")
    assert lines[1].endswith(": 5 recorded")


def test_the_stop_writes_what_is_held(caplog):
    clock = Clock()
    commits = CommitLog(interval_s=10, clock=clock)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        commits.batch({"ordered": 1})
        clock.now += 1
        commits.batch({"stale": 2})
        commits.flush()
    assert _lines(caplog) == ["committed 1 events: 1 ordered", "committed 2 events: 2 stale"]


def test_nothing_is_counted_when_info_is_off(caplog):
    commits = CommitLog(interval_s=10, clock=Clock())
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        commits.batch({"ordered": 1})
        commits.flush()
    assert _lines(caplog) == []
