"""The CoAP process's collector: survivors frozen, cycles among them still collected."""

import asyncio
import gc
import weakref

from backend.gc_tuning import SurvivorFreezer, tune_gc


class Node:
    def __init__(self):
        self.other = None


def _cycle() -> weakref.ref:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_survivors_are_frozen_and_a_full_collection_still_frees_their_cycles():
    loop = asyncio.new_event_loop()
    try:
        freezer = SurvivorFreezer(loop, freeze_s=0.01, full_s=3600)
        alive = _cycle()  # garbage already, but nothing collected it yet
        frozen_before = gc.get_freeze_count()
        freezer._tick()  # what the loop does every freeze_s
        assert gc.get_freeze_count() > frozen_before, "survivors were not frozen"
        gc.collect()
        assert alive() is not None, "a frozen cycle is never walked by collections"
        assert freezer.full_collection() >= 2
        assert alive() is None, "the full collection must free cycles among the frozen"
        assert freezer.full_collections == 1
    finally:
        loop.close()
        gc.unfreeze()


def test_tune_gc_with_a_loop_keeps_young_collections_small_and_freezes_on_a_timer():
    async def scenario():
        tune_gc(asyncio.get_running_loop())
        assert gc.get_threshold()[0] <= 5000
        garbage = [Node() for _ in range(1000)]  # survivors of the next young collection
        ours = {id(node) for node in garbage}

        def unfrozen() -> int:
            """How many of ours a collection would still walk: the frozen (permanent)
            generation is not in gc.get_objects(). Asked of the objects themselves, not
            of the freeze count, which a full collection elsewhere in this process (a
            server thread of an earlier test) lowers by whatever it frees."""
            return sum(1 for obj in gc.get_objects() if id(obj) in ours)

        assert unfrozen() == len(garbage)
        # Bounded poll (the freezer ticks every 0.5 s): until the survivors are frozen.
        for _ in range(100):
            if unfrozen() == 0:
                break
            await asyncio.sleep(0.1)
        assert unfrozen() == 0, "no freeze within 10 s"

    try:
        asyncio.run(scenario())
    finally:
        gc.unfreeze()
        gc.set_threshold(700, 10, 10)
