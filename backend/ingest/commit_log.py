"""The ingest's INFO line about what it committed.

A quiet ingest logs each batch as it commits, as it always did, now with outcome names
("committed 1 events: 1 ordered"; the names of `replenish_events_total`). A busy one logs at most one line per `interval_s`, with the events, batches
and outcomes since its last line; a batch committed inside the interval is added to the
next line, which a timer writes at the interval's end if no batch comes to write it.
Why: one line per batch was 200-300 lines a second at moderate load, each a record the
writer process forwarded to the event loop (writer_process.py). The batch lines are
still there at DEBUG (pipeline.py).

Fed by the pipelines' `on_batch` (backend/runtime.py); `flush()` at stop writes what
is left, so every committed event is in some line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

log = logging.getLogger(__name__)

INTERVAL_S = 10.0


class CommitLog:
    def __init__(self, interval_s: float = INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic):
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()  # the thread pipeline calls from its writer thread
        self._outcomes: Counter = Counter()
        self._batches = 0
        self._last_line: float | None = None
        self._timer: threading.Timer | None = None

    def batch(self, outcomes: dict[str, int]) -> None:
        """One committed batch: events per outcome."""
        if not log.isEnabledFor(logging.INFO):
            return
        with self._lock:
            self._outcomes.update(outcomes)
            self._batches += 1
            now = self._clock()
            if self._last_line is None or now - self._last_line >= self.interval_s:
                self._write(now)
            elif self._timer is None:
                self._timer = threading.Timer(self.interval_s - (now - self._last_line),
                                              self.flush)
                self._timer.daemon = True
                self._timer.start()

    def flush(self) -> None:
        """Write what is held now (the timer's end of an interval; the ingest's stop)."""
        with self._lock:
            if self._batches:
                self._write(self._clock())

    def _write(self, now: float) -> None:
        if self._timer is not None:  # this line writes what it was for
            self._timer.cancel()
            self._timer = None
        events = sum(self._outcomes.values())
        outcomes = ", ".join(f"{n} {outcome}" for outcome, n in sorted(self._outcomes.items()))
        if self._batches == 1:
            log.info("committed %d events: %s", events, outcomes)
        else:
            log.info("committed %d events in %d batches over %.1f s: %s", events,
                     self._batches, now - self._last_line, outcomes)
        self._outcomes.clear()
        self._batches = 0
        self._last_line = now
