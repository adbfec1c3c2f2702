"""Logs an operator can keep: JSON lines on request, and hostile traffic summarised in
counted lines instead of one line per datagram."""

from __future__ import annotations

import json
import logging
import secrets
import time

import pytest

from backend import protocol
from backend.logs import JsonFormatter, Summarize
from backend.protocol import Kind, WireEvent
from devtools.faults.backend_proc import BackendProcess
from devtools.net import coap_post_all
from tests import migrated


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def captured():
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler, clock = Keep(), Clock()
    summarize = Summarize(burst=3, window_s=10, clock=clock)
    summarize.attach(handler)
    logger = logging.getLogger("backend.test_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, records, clock, summarize
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)
    logger.propagate = True


def test_warnings_past_the_burst_are_counted_in_one_line(captured):
    logger, records, clock, summarize = captured
    for n in range(50):
        logger.warning("refused event from device %s: bad MAC", n)
        logger.warning("another kind %d", n)
        logger.info("info is never held back %d", n)
    assert sum("bad MAC" in r.getMessage() for r in records) == 3
    assert sum("info is never" in r.getMessage() for r in records) == 50
    clock.now = 11  # the window ends; the next one of that kind reports the rest
    logger.warning("refused event from device %s: bad MAC", 99)
    summaries = [r.getMessage() for r in records if "not shown one by one" in r.getMessage()]
    assert summaries == ["47 more like 'refused event from device %s: bad MAC' in 10 s "
                         "(not shown one by one)"]
    summarize.flush()  # at exit: the other kind's count too
    assert any(m.startswith("47 more like 'another kind %d'")
               for m in (r.getMessage() for r in records))


def test_json_lines_carry_time_level_logger_and_message():
    record = logging.LogRecord("backend.x", logging.WARNING, __file__, 1, "a %s b", ("é",), None)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "WARNING" and entry["logger"] == "backend.x"
    assert entry["message"] == "a é b" and entry["time"].endswith("Z")


def test_a_flood_of_forged_events_writes_a_bounded_number_of_json_lines(tmp_path):
    """1,000 events signed with a wrong key at the real `replenish run`: every line it
    writes is JSON, the refusals show at most the burst plus counted summaries, and
    shown + counted is every refusal. (About logging, not the database: SQLite.)"""
    db_url = f"sqlite:///{tmp_path / 'replenish.db'}"
    migrated.migrate(db_url)
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": db_url,
           "REPLENISH_DATA_DIR": str(tmp_path), "REPLENISH_KEK": secrets.token_hex(32),
           "REPLENISH_LOG_FORMAT": "json", "REPLENISH_COAP_HOST": "127.0.0.1",
           "REPLENISH_HTTP_PORT": "0"}
    log_path = tmp_path / "backend.log"
    backend = BackendProcess(env, log_path, roles=("ingest",))
    backend.start()
    try:
        forged = [protocol.encode_event(secrets.token_bytes(32), secrets.token_bytes(8),
                                        WireEvent(seq=n + 1, kind=Kind.PRESS, slot=0))
                  for n in range(1000)]
        started = time.monotonic()
        answers = coap_post_all(f"coap://127.0.0.1:{backend.port}/ev", forged)
        took_s = time.monotonic() - started
        assert {int(a.code) for a in answers} == {protocol.Result.UNAUTHORIZED}
    finally:
        assert backend.stop() == 0
    entries = [json.loads(line) for line in log_path.read_text().splitlines()]
    refusals = [e for e in entries if e["message"].startswith("refused event from unknown")]
    summaries = [e for e in entries if "refused event from unknown" in e["message"]
                 and "not shown one by one" in e["message"]]
    counted = sum(int(e["message"].split()[0]) for e in summaries)
    # A window opens at most every window_s while the refusals come: two in a run of a
    # few seconds, more only if a loaded host stretched the 1,000 round trips past 20 s.
    windows = 1 + int(took_s // Summarize().window_s)
    assert len(refusals) <= Summarize().burst * max(2, windows), (len(refusals), took_s)
    assert len(refusals) + counted == 1000
