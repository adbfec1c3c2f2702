"""Garbage-collector settings for the long-running server processes."""

from __future__ import annotations

import gc
import os

def tune_gc() -> None:
    """Keep the collector's pauses out of the answer path (call once, after start-up).

    aiocoap allocates several container objects per exchange; with CPython's default
    thresholds the young generation is collected every 700 net allocations and the
    oldest every 70,000, and each full collection walks every long-lived object (all of
    SQLAlchemy, aiocoap, Flask, and aiocoap's per-remote state): 50-150 ms pauses that
    were the p99. `gc.freeze()` moves everything start-up made into a permanent
    generation that collections never walk, and the higher thresholds make young
    collections rarer (each stays small) and full ones much rarer. Cycles are still
    collected: this changes when, not whether.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(_GC_YOUNG, _GC_MIDDLE, _GC_OLD)


# Overridable for experiments (docs/performance.md): REPLENISH_GC_THRESHOLDS=700,10,10
# restores CPython's defaults.
_GC_YOUNG, _GC_MIDDLE, _GC_OLD = (int(x) for x in os.environ.get(
    "REPLENISH_GC_THRESHOLDS", "20000,20,100").split(","))
