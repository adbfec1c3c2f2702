"""Garbage-collector settings for the long-running server processes."""

from __future__ import annotations

import asyncio
import gc
import logging
import time

from backend.config import DEFAULTS, Settings

log = logging.getLogger(__name__)


# Thresholds after start-up (REPLENISH_GC_THRESHOLDS overrides both; docs/performance.md).
WRITER_THRESHOLDS = (20000, 20, 100)
LOOP_THRESHOLDS = (2000, 10, 10)


def tune_gc(loop: asyncio.AbstractEventLoop | None = None,
            settings: Settings = DEFAULTS) -> None:
    """Keep the collector's pauses out of the answer path (call once, after start-up).

    aiocoap allocates several container objects per exchange and keeps each exchange's
    state for 247 s (RFC 7252's EXCHANGE_LIFETIME). With CPython's default thresholds
    every collection of an older generation walks all of that state: 50-150 ms pauses
    that were the p99. `gc.freeze()` moves everything start-up made into a permanent
    generation that collections never walk.

    With the event loop given (`loop`, the CoAP process), young collections stay small
    (a millisecond each) and what survives them is frozen twice a second
    (`SurvivorFreezer`): survivors are aiocoap's long-lived exchange state, so the
    middle and old generations never grow and their collections stay as short as the
    young ones. Cycles among frozen objects wait for a full collection every
    `settings.gc_full_every_s` (one longer pause, rare enough to stay out of the p99; freed by
    reference counting, frozen objects go at once as any other).

    Without a loop (the writer process, which keeps nothing between batches) the
    thresholds are raised instead: young collections rarer, full ones much rarer.
    Either way cycles are still collected: this changes when, not whether.
    """
    gc.collect()
    gc.freeze()
    if loop is None:
        gc.set_threshold(*(settings.gc_thresholds or WRITER_THRESHOLDS))
        return
    gc.set_threshold(*(settings.gc_thresholds or LOOP_THRESHOLDS))
    SurvivorFreezer(loop, full_s=settings.gc_full_every_s).start()


class SurvivorFreezer:
    """Freezes what survived the young collections every `freeze_s`; every `full_s`,
    unfreezes everything and collects it whole once (then freezes the survivors)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, freeze_s: float = 0.5,
                 full_s: float = DEFAULTS.gc_full_every_s):
        self._loop = loop
        self._freeze_s = freeze_s
        self._full_s = full_s
        self._next_full = time.monotonic() + self._full_s
        self.full_collections = 0

    def start(self) -> None:
        self._loop.call_later(self._freeze_s, self._tick)

    def _tick(self) -> None:
        if self._loop.is_closed():
            return
        if time.monotonic() >= self._next_full:
            self.full_collection()
        else:
            gc.freeze()
        self._loop.call_later(self._freeze_s, self._tick)

    def full_collection(self) -> int:
        started = time.perf_counter()
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        self._next_full = time.monotonic() + self._full_s
        self.full_collections += 1
        log.debug("full garbage collection: %d unreachable objects in %.0f ms", found,
                  (time.perf_counter() - started) * 1000)
        return found
