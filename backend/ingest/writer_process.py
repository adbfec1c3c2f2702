"""The group-commit writer in a child process (REPLENISH_INGEST_WRITER=process, default).

Why a process: the writer's Python work (CBOR, MACs, SQLAlchemy) and aiocoap's share
one GIL inside one process, so at saturation each slowed the other down. In its own
process the writer uses the second core, and the event loop only moves bytes: it hands
a batch of raw requests down a pipe and resolves each request's future with the answer
that comes back, which the child sends only after its commit.

On the pipe (marshal both ways; the peer is our own child):
    parent -> child   ([request bytes, ...], failpoint)
    child -> parent   ([(code, payload, authenticated), ...], [log record, ...],
                       seconds the batch took to decide and commit)
Each child is a lane with one batch in flight at a time; what arrives meanwhile waits
and goes as the next batch (group commit) to the first lane that is free. There are
`REPLENISH_WRITER_LANES` of them on PostgreSQL (two by default, one on a host of two
cores or fewer, `backend/config.py`): one batch's round
trips and durable COMMIT no longer hold up the next, which another lane decides
meanwhile on its own connection. SQLite has one lane (`lanes_for`); its writers begin
IMMEDIATE, so a second writer on the file (another ingest process, or a lane) waits
for the write lock and then sees the first's commit. A second batch goes in flight
only once a full batch waits (`_may_send`): moderate load commits one batch at a
time, as one lane did. Lanes are kept apart as
several ingest processes are: each batch locks its devices (PostgreSQL: `FOR UPDATE`
in sorted order, so the same device's events in two lanes are decided one after the
other, the second seeing the first's commit; SQLite: the whole database) and the
households whose limits it counts (limits_lock.py), and a deadlock is retried
(pipeline.py). The child's log records travel with its answers and are logged here,
so every log line still goes through this process's logging set-up.

If a child dies, the requests of its batch in flight are answered 5.03 and a new child
is started for its lane; waiting requests go to another lane, or are answered 5.03 too
when no lane is left. Nothing is lost: a batch whose commit did not happen recorded
nothing, and a batch that committed is answered from the database when the device
retransmits.
"""

from __future__ import annotations

import asyncio
import logging
import marshal
import multiprocessing
import os
import signal
from multiprocessing.connection import Connection

from backend.config import DEFAULTS, Settings
from backend.gc_tuning import tune_gc
from backend.ingest.decide import IngestConfig
from backend.ingest.pipeline import BatchWriter, OnBatch, outcomes_of, unavailable
from backend.ingest.reply import Reply
from backend.storage.db import sqlite_path

log = logging.getLogger(__name__)

_RESPAWN_MAX_DELAY_S = 5.0


def _context():
    """forkserver: a clean child (no copy of this process's threads and locks, as a
    plain fork would give) that is still quick to start, because the modules below are
    imported once in the fork server rather than in every child."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx


def lanes_for(settings: Settings) -> int:
    """Writer lanes: `REPLENISH_WRITER_LANES` on PostgreSQL; one on SQLite. A second
    lane there waits for the write lock in SQLite's busy handler, which sleeps between
    tries (up to 100 ms): the lock can idle while it sleeps. Faster in short runs, no
    faster in full ones, and two ingest processes with two lanes each went from 0.81-0.95
    to 0.50-0.64 of one process (docs/performance.md)."""
    return 1 if sqlite_path(settings.db_url) is not None else settings.writer_lanes


class _Lane:
    """One writer child and its pipe; at most one batch in flight."""

    def __init__(self, index: int):
        self.index = index
        self.process = None
        self.conn: Connection | None = None
        self.inflight: list[asyncio.Future] | None = None
        self.failures_in_a_row = 0

    @property
    def idle(self) -> bool:
        return self.conn is not None and self.inflight is None


class ProcessPipeline:
    """Same interface as `GroupCommitPipeline`: `start()` inside the running event
    loop, `await submit(request)`, `stop()`."""

    def __init__(self, settings: Settings, max_batch: int = DEFAULTS.group_commit_max,
                 config: IngestConfig | None = None, on_batch: OnBatch | None = None,
                 lanes: int | None = None):
        self._settings = settings
        self._on_batch = on_batch
        self._config = config or IngestConfig()
        self._max_batch = max_batch
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lanes = [_Lane(i) for i in range(lanes or lanes_for(settings))]
        self._waiting: list[tuple[bytes, asyncio.Future]] = []
        self._send_scheduled = False
        self._stopping = False
        # Fault injection for tests: "exit-after-commit" makes the writer that takes the
        # next batch exit after its commit without answering (it goes with that batch).
        self.failpoint: str | None = None
        self.batches = 0
        self.events = 0
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        """The first lane's writer process."""
        return self.pids[0]

    @property
    def pids(self) -> list[int | None]:
        return [lane.process.pid if lane.process is not None else None
                for lane in self._lanes]

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for lane in self._lanes:
            self._spawn(lane)

    def waiting(self) -> int:
        """Events handed in but not yet sent to a writer."""
        return len(self._waiting)

    def in_flight(self) -> int:
        """Events sent to a writer and not yet answered (every lane's batch)."""
        return sum(len(lane.inflight or ()) for lane in self._lanes)

    async def submit(self, request: bytes) -> Reply:
        if asyncio.get_running_loop() is not self._loop:  # a caller on another loop
            return await asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(self.submit(request), self._loop))
        future = self._loop.create_future()
        self._waiting.append((request, future))
        if not self._send_scheduled and self._may_send():
            # After the callbacks already due: requests that arrived together go together.
            self._send_scheduled = True
            self._loop.call_soon(self._send)
        return await future

    def stop(self) -> None:
        self._stopping = True
        for lane in self._lanes:  # every child sees EOF and finishes its batch at once
            self._disconnect(lane)
        futures = [future for _request, future in self._waiting]
        self._waiting = []
        for lane in self._lanes:
            self._reap(lane)
            futures += lane.inflight or []
            lane.inflight = None
        _answer(futures, unavailable("server stopping, retry later"))

    # -- parent side -----------------------------------------------------------------

    def _spawn(self, lane: _Lane) -> None:
        ctx = _context()
        ours, theirs = ctx.Pipe(duplex=True)
        lane.process = ctx.Process(
            target=_child_main, name="ingest-writer", daemon=True,
            args=(theirs, self._settings, self._config, _forwarded_level()))
        lane.process.start()
        theirs.close()
        lane.conn = ours
        self._loop.add_reader(ours.fileno(), self._on_answers, lane)
        log.info("ingest writer process %d started (lane %d)", lane.process.pid, lane.index)
        self._send()

    def _may_send(self) -> bool:
        """Events wait, a lane is idle, and either no batch is in flight or a full batch
        waits. Why not any idle lane: each batch costs PostgreSQL a commit and a dozen
        round trips whatever its size, and on a busy host smaller batches in parallel
        made moderate load's p99 worse (docs/performance.md); a backlog (saturation, a
        slow fsync) is what another lane is for."""
        if not self._waiting or not any(lane.idle for lane in self._lanes):
            return False
        return (len(self._waiting) >= self._max_batch
                or all(lane.inflight is None for lane in self._lanes))

    def _send(self) -> None:
        """A batch to each idle lane while `_may_send`."""
        self._send_scheduled = False
        for lane in self._lanes:
            if not self._may_send():
                return
            if not lane.idle:
                continue
            batch = self._waiting[:self._max_batch]
            del self._waiting[:self._max_batch]
            lane.inflight = [future for _request, future in batch]
            failpoint, self.failpoint = self.failpoint, None
            try:
                lane.conn.send_bytes(marshal.dumps(
                    ([request for request, _future in batch], failpoint)))
            except OSError:
                self._writer_died(lane)

    def _on_answers(self, lane: _Lane) -> None:
        try:
            replies, records, commit_s = marshal.loads(lane.conn.recv_bytes())
        except (EOFError, OSError):
            self._writer_died(lane)
            return
        futures, lane.inflight = lane.inflight or [], None
        # The next batch first: the writer waits for it while this one's answers go out.
        self._send()
        for record in records:
            _log_forwarded(record)
        self.batches += 1
        self.events += len(futures)
        lane.failures_in_a_row = 0
        for future, wire in zip(futures, replies):
            if not future.done():
                future.set_result(Reply.from_wire(wire))
        if self._on_batch is not None:
            self._on_batch(outcomes_of(code for code, _payload, _auth in replies), commit_s)

    def _writer_died(self, lane: _Lane) -> None:
        code = None
        if lane.process is not None:
            lane.process.join(timeout=5)  # reap it: its exit code says what happened
            code = lane.process.exitcode
        self._disconnect(lane)
        self._reap(lane)
        futures, lane.inflight = lane.inflight or [], None
        if not any(other.conn is not None for other in self._lanes):
            # No lane left to take them before a respawn: the devices retry instead.
            futures += [future for _request, future in self._waiting]
            self._waiting = []
        log.error("ingest writer process exited (%s); answering %d events 5.03",
                  code, len(futures))
        _answer(futures, unavailable("storage unavailable, retry later"))
        if self._stopping:
            return
        self.restarts += 1
        lane.failures_in_a_row += 1
        delay = min(_RESPAWN_MAX_DELAY_S, 0.1 * 2 ** (lane.failures_in_a_row - 1))
        self._loop.call_later(delay, self._respawn, lane)
        self._send()  # what waits may go to a lane that is still up

    def _respawn(self, lane: _Lane) -> None:
        if not self._stopping and lane.conn is None:
            self._spawn(lane)

    def _disconnect(self, lane: _Lane) -> None:
        if lane.conn is not None:
            self._loop.remove_reader(lane.conn.fileno())
            lane.conn.close()  # the child sees EOF and exits after its current batch
            lane.conn = None

    @staticmethod
    def _reap(lane: _Lane) -> None:
        if lane.process is not None:
            lane.process.join(timeout=10)
            if lane.process.is_alive():
                lane.process.kill()
                lane.process.join(timeout=5)
            lane.process = None


def _answer(futures: list[asyncio.Future], reply: Reply) -> None:
    for future in futures:
        if not future.done():
            future.set_result(reply)


# -- child side ----------------------------------------------------------------------

def _child_main(conn: Connection, settings: Settings, config: IngestConfig,
                level: int) -> None:
    from backend.accounts.keys import load_keyring
    from backend.storage.db import make_engine, make_sessionmaker

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group;
    records: list[tuple] = []                      # the parent decides when we stop
    _collect_logs(level, records)
    # pre_ping: a broken connection fails its batch, which is retried (db.make_engine)
    engine = make_engine(settings.db_url, pre_ping=False, generic_plans=True)
    writer = BatchWriter(make_sessionmaker(engine, writer=True), load_keyring(settings),
                         config)
    tune_gc(settings=settings)
    try:
        while True:
            try:
                requests, failpoint = marshal.loads(conn.recv_bytes())
            except EOFError:
                return  # the parent closed the pipe: stopping, or gone
            replies = writer.commit(requests)
            if failpoint == "exit-after-commit":
                os._exit(70)  # committed, not answered: as if killed right here
            answers = [reply.to_wire() for reply in replies]
            try:
                conn.send_bytes(marshal.dumps((answers, records[:], writer.last_commit_s)))
            except OSError:
                return  # the parent stopped meanwhile; devices get answers on retransmission
            records.clear()
    finally:
        engine.dispose()


def _forwarded_level() -> int:
    """The lowest level the parent would log from the backend's modules."""
    return min(logging.getLogger("backend").getEffectiveLevel(),
               logging.getLogger().getEffectiveLevel())


class _Collector(logging.Handler):
    def __init__(self, level: int, records: list[tuple]):
        super().__init__(level)
        self._records = records

    def emit(self, record: logging.LogRecord) -> None:
        exc_text = None
        if record.exc_info:
            exc_text = logging.Formatter().formatException(record.exc_info)
        self._records.append((record.name, record.levelno, record.getMessage(), exc_text,
                              record.created, record.pathname, record.lineno,
                              record.funcName, str(record.msg)))


def _collect_logs(level: int, records: list[tuple]) -> None:
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    root.addHandler(_Collector(level, records))
    root.setLevel(level)
    logging.getLogger("backend").setLevel(logging.NOTSET)


def _log_forwarded(record: tuple) -> None:
    name, levelno, message, exc_text, created, pathname, lineno, func, template = record
    logger = logging.getLogger(name)
    if logger.isEnabledFor(levelno):
        logger.handle(logging.makeLogRecord({
            "name": name, "levelno": levelno, "levelname": logging.getLevelName(levelno),
            "msg": message, "args": None, "exc_text": exc_text, "created": created,
            "msecs": (created % 1) * 1000, "pathname": pathname, "lineno": lineno,
            "funcName": func, "processName": "ingest-writer",
            "template": template}))  # what backend.logs.Summarize counts by
