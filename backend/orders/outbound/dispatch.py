"""Bounded, isolated outbound work: a pool per lane, limits per destination and per
household, a circuit breaker per destination (docs/operations.md, "Outbound calls").

The order worker used to send each webhook in the loop that releases holds and places
orders, one at a time: one household's webhook that accepts connections and never
answers held every other household's orders for the whole timeout. Now the worker only
hands jobs to a `Dispatcher` and goes on. A job starts at once on a pool thread when its
destination, its household and the pool all have room and the destination's breaker
lets it through; otherwise `try_start` says how long to wait and the item goes back to
the outbox for that long (without counting an attempt). So a slow or dead destination
holds at most `per_destination` threads, a household at most `per_household`, and
nothing else waits on them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from backend.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    threads: int  # jobs at once in this lane
    per_destination: int
    per_household: int
    breaker_failures: int  # consecutive failures that open a destination's breaker
    breaker_open_s: float  # how long it stays open before one trial call
    busy_wait_s: float  # how long a job waits when its destination or household is full


@dataclass(frozen=True)
class Job:
    destination: str  # Destination.key (or "simulator")
    household_id: int | None
    run: Callable[[], bool]  # True: the destination answered (healthy); False: it did not
    label: str = ""


class Breaker:
    """Closed → (n consecutive failures) → open for `open_s` → half-open: one trial call;
    its success closes the breaker, its failure opens it again."""

    def __init__(self, failures: int, open_s: float):
        self._threshold, self._open_s = failures, open_s
        self.failures = 0
        self.open_until: float | None = None
        self.trial = False  # a half-open trial call is running

    def wait_s(self, now: float) -> float | None:
        """None if a call may start now, else seconds to wait."""
        if self.open_until is None:
            return None
        if now < self.open_until:
            return self.open_until - now
        if self.trial:
            return self._open_s
        self.trial = True
        return None

    def record(self, healthy: bool, now: float) -> bool:
        """Record a call's outcome; True when this opened the breaker."""
        was_trial, self.trial = self.trial, False
        if healthy:
            self.failures, self.open_until = 0, None
            return False
        self.failures += 1
        if was_trial or (self.open_until is None and self.failures >= self._threshold):
            self.open_until = now + self._open_s
            return True
        return False

    @property
    def state(self) -> str:
        if self.open_until is None:
            return "closed"
        return "half-open" if self.trial else "open"


class Dispatcher:
    """One lane of outbound jobs (the merchant's, or household webhooks)."""

    def __init__(self, name: str, limits: Limits, on_done: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.monotonic, metrics: Metrics | None = None):
        self.name = name
        self._metrics = metrics
        self.limits = limits
        self._on_done = on_done
        self._clock = clock
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._by_destination: Counter[str] = Counter()
        self._by_household: Counter[int] = Counter()
        self._breakers: dict[str, Breaker] = {}
        self._running = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._stopped = False

    # -- admission ------------------------------------------------------------------------
    def free(self) -> int:
        """How many more jobs the lane would run right now (0 when stopped)."""
        with self._lock:
            return 0 if self._stopped else self.limits.threads - self._running

    def breaker(self, destination: str) -> Breaker:
        with self._lock:
            return self._breaker(destination)

    def _breaker(self, destination: str) -> Breaker:
        if destination not in self._breakers:
            self._breakers[destination] = Breaker(self.limits.breaker_failures,
                                                  self.limits.breaker_open_s)
        return self._breakers[destination]

    def try_start(self, job: Job) -> float | None:
        """Start `job` now and return None, or return how many seconds it should wait."""
        limits = self.limits
        with self._lock:
            if self._stopped:
                return limits.busy_wait_s
            if (self._running >= limits.threads
                    or self._by_destination[job.destination] >= limits.per_destination
                    or (job.household_id is not None
                        and self._by_household[job.household_id] >= limits.per_household)):
                self._deferred("busy")
                return limits.busy_wait_s
            wait = self._breaker(job.destination).wait_s(self._clock())
            if wait is not None:
                self._deferred("breaker")
                return wait
            self._running += 1
            self._by_destination[job.destination] += 1
            if job.household_id is not None:
                self._by_household[job.household_id] += 1
            if len(self._threads) < min(self._running, limits.threads):
                thread = threading.Thread(target=self._serve, daemon=True,
                                          name=f"outbound-{self.name}-{len(self._threads)}")
                self._threads.append(thread)
                thread.start()
        self._queue.put(job)
        return None

    def _deferred(self, why: str) -> None:
        if self._metrics is not None:
            self._metrics.outbound_deferred.labels(self.name, why).inc()

    def running(self) -> int:
        with self._lock:
            return self._running

    def open_breakers(self) -> int:
        with self._lock:
            return sum(b.open_until is not None for b in self._breakers.values())

    # -- running ----------------------------------------------------------------------------
    def _serve(self) -> None:
        while (job := self._queue.get()) is not None:
            healthy = False
            try:
                healthy = job.run()
            except Exception:  # the job records its own failures; this is a bug
                log.exception("outbound %s job %s failed", self.name, job.label)
            finally:
                self._finished(job, healthy)

    def _finished(self, job: Job, healthy: bool) -> None:
        with self._lock:
            self._running -= 1
            self._by_destination[job.destination] -= 1
            if not self._by_destination[job.destination]:
                del self._by_destination[job.destination]
            if job.household_id is not None:
                self._by_household[job.household_id] -= 1
                if not self._by_household[job.household_id]:
                    del self._by_household[job.household_id]
            opened = self._breaker(job.destination).record(healthy, self._clock())
            self._idle.notify_all()
        if opened:
            if self._metrics is not None:
                self._metrics.breaker_opened.labels(self.name).inc()
            log.warning("outbound %s: %s failed %d times in a row; circuit open for %g s",
                        self.name, job.destination, self.limits.breaker_failures,
                        self.limits.breaker_open_s)
        self._on_done()

    def in_flight(self) -> dict[str, int]:
        with self._lock:
            return dict(self._by_destination)

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no job runs (bounded); True if none does."""
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
            return True

    def stop(self) -> None:
        """Take no more jobs; the pool threads end when their job does."""
        with self._lock:
            self._stopped = True
            threads = len(self._threads)
        for _ in range(threads):
            self._queue.put(None)
