"""Group commit: many events, one transaction, then every answer.

The writer takes whatever events are waiting (up to `max_batch`), decides them all in
one transaction, commits once and only then resolves the waiting requests. A device
is never told "ordered" about an order that a crash could still lose. The writer runs
in its own process by default (backend/ingest/writer_process.py: the event loop then
only moves bytes) or as a thread of this process (`GroupCommitPipeline`).

The common case decides the batch with per-batch lookups and no savepoints (per-event
ORM work was most of the writer's time). If any event raises, that transaction is
rolled back and the batch decided again with each event in its own savepoint, so one
failing event is answered 5.03 without taking the others down.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import Counter
from typing import Callable, Protocol, runtime_checkable

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import sessionmaker

from backend.accounts.keys import Keyring
from backend.config import DEFAULTS
from backend.ingest.decide import IngestConfig, decide
from backend.ingest.limits_lock import lock_limited_households
from backend.ingest.lookups import BatchLookups, LeadTimes, Lookups
from backend.ingest.reply import Reply
from backend.protocol import Result

log = logging.getLogger(__name__)

# Told after each group commit: events per outcome, and the decide-and-commit seconds
# (backend/metrics.py). Called once per batch, never per event.
OnBatch = Callable[[dict[str, int], "float | None"], None]


def outcomes_of(codes) -> dict[str, int]:
    """Events per outcome name from the batch's result codes."""
    return {Result(code).outcome: n for code, n in Counter(codes).items()}

_STOP = object()
_ATTEMPTS = 3


@runtime_checkable
class Pipeline(Protocol):
    """What the CoAP layer needs of a group-commit writer: `GroupCommitPipeline` (a
    thread of this process) or `ProcessPipeline` (a child process, writer_process.py)."""

    def start(self) -> None: ...

    def waiting(self) -> int: ...  # events submitted and not yet answered

    async def submit(self, request: bytes) -> Reply: ...  # answered after its commit

    def stop(self) -> None: ...


class BatchWriter:
    """Decides a batch of events in one transaction and commits it (no threads here:
    the thread pipeline below and the writer process both drive one of these)."""

    def __init__(self, sessions: sessionmaker, keyring: Keyring,
                 config: IngestConfig | None = None):
        self._sessions = sessions
        self._config = config or IngestConfig()
        self._keyring = keyring
        self.fallbacks = 0  # batches decided again event by event (an event raised)
        self._lead_times = LeadTimes()  # products' lead times, across batches
        self.last_commit_s: float | None = None  # the last batch's decide-and-commit time

    def commit(self, requests: list[bytes]) -> list[Reply]:
        started = time.perf_counter()
        try:
            return self._commit(requests)
        finally:
            self.last_commit_s = time.perf_counter() - started

    def _commit(self, requests: list[bytes]) -> list[Reply]:
        isolated = False
        attempt = 1
        while attempt <= _ATTEMPTS:
            try:
                with self._sessions() as session, session.begin():
                    if isolated:
                        lock_limited_households(session, Lookups(), requests)
                        replies = [self._decide_one(session, r) for r in requests]
                    else:
                        replies = self._decide_together(session, requests)
                _log_committed(replies)
                return replies
            except _EventFailed:
                isolated = True  # not an attempt: nothing was wrong with the database
                self.fallbacks += 1
                continue
            except OperationalError as err:
                # Deadlock, serialization failure, lock timeout: nothing was committed
                # and decisions depend only on the database, so deciding again is safe.
                log.warning("group commit of %d events failed (attempt %d/%d): %s",
                            len(requests), attempt, _ATTEMPTS, err.orig)
                attempt += 1
            except Exception:
                log.exception("group commit of %d events failed", len(requests))
                break
        log.error("answering %d events 5.03; devices will retry", len(requests))
        return [unavailable("storage unavailable, retry later") for _ in requests]

    def _decide_together(self, session, requests: list[bytes]) -> list[Reply]:
        replies = []
        try:
            lookups = BatchLookups(session, requests, self._lead_times)
            lock_limited_households(session, lookups, requests)
            with session.no_autoflush:  # one flush at commit (see BatchLookups)
                for request in requests:
                    replies.append(decide(session, self._keyring, request, self._config,
                                          lookups))
            lookups.flush(session)
        except OperationalError:
            raise  # the database, not an event: retry the whole batch
        except Exception as err:
            if _connection_lost(session, err):
                # The batch's own statements run on the driver (batch_sql.py), which
                # raises its own error, not SQLAlchemy's: the same retry as above.
                raise OperationalError("group commit", None, err) from err
            # Not the database: an event raised (a bug). Its batch is decided again with
            # a savepoint per event, several times slower: say so, once per batch.
            log.warning("an event raised in a batch of %d (%r); deciding each on its own",
                        len(requests), err)
            raise _EventFailed from err
        return replies

    def _decide_one(self, session, request: bytes) -> Reply:
        savepoint = session.begin_nested()
        try:
            reply = decide(session, self._keyring, request, self._config)
        except OperationalError:
            savepoint.rollback()
            raise  # the database, not this event: retry the whole batch
        except Exception:
            savepoint.rollback()
            log.exception("event could not be processed; answered 5.03")
            return unavailable("internal error, retry later")
        savepoint.commit()
        return reply


def _connection_lost(session, err: Exception) -> bool:
    """`err` (the driver's) says the database connection broke (the writer's engine
    sends no pre-ping: backend/storage/db.py)."""
    try:
        connection = session.connection()
        return connection.dialect.is_disconnect(
            err, connection.connection.dbapi_connection, None)
    except Exception:  # not known: treated as the event's error, as before
        return False


def _log_committed(replies: list[Reply]) -> None:
    """One DEBUG line per batch; at INFO, commit_log.py sums batches up (each event is
    in the events table; refusals log their own)."""
    if log.isEnabledFor(logging.DEBUG):
        codes = Counter(reply.result.dotted for reply in replies)
        log.debug("a batch of %d events committed: %s", len(replies),
                  ", ".join(f"{n} x {code}" for code, n in sorted(codes.items())))


def unavailable(message: str) -> Reply:
    """5.03: nothing was recorded; the device keeps the event and sends it again."""
    return Reply.text(Result.UNAVAILABLE, message)


class GroupCommitPipeline:
    """The writer as a thread of this process (REPLENISH_INGEST_WRITER=thread)."""

    def __init__(self, sessions: sessionmaker, keyring: Keyring,
                 max_batch: int = DEFAULTS.group_commit_max,
                 config: IngestConfig | None = None, on_batch: OnBatch | None = None):
        self._writer = BatchWriter(sessions, keyring, config)
        self._on_batch = on_batch
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ingest-writer", daemon=True)
        self.batches = 0
        self.events = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=10)

    def waiting(self) -> int:
        """Events handed in but not yet taken into a batch."""
        return self._queue.qsize()

    async def submit(self, request: bytes) -> Reply:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put((request, loop, future))
        return await future

    def _take_batch(self) -> list | None:
        first = self._queue.get()
        if first is _STOP:
            return None
        batch = [first]
        while len(batch) < self._max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                self._queue.put(_STOP)
                break
            batch.append(item)
        return batch

    def _run(self) -> None:
        while (batch := self._take_batch()) is not None:
            replies = self._writer.commit([request for request, _loop, _future in batch])
            self.batches += 1
            self.events += len(batch)
            for (_request, loop, future), reply in zip(batch, replies):
                loop.call_soon_threadsafe(_resolve, future, reply)
            if self._on_batch is not None:
                self._on_batch(outcomes_of(reply.result for reply in replies),
                               self._writer.last_commit_s)


class _EventFailed(Exception):
    """An event raised while the batch was decided without savepoints."""


def _resolve(future: asyncio.Future, reply: Reply) -> None:
    if not future.done():
        future.set_result(reply)
