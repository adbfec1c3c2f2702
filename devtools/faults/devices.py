"""Simulated devices that behave like the firmware when answers do not come.

devtools.bench.loadgen drops an event after its last retransmission (right for a benchmark).
A device does not: the event stays in its offline queue with its sequence number and
is sent again later, the same bytes. `KeepingLoadGenerator` does that, and also keeps
an event that was answered with an unauthenticated 5.03 (storage unavailable, e.g.
while the writer process restarts), which the firmware treats as "no answer", and one
whose separate answer never came after an empty ACK (every copy of it lost).
"""

from __future__ import annotations

import asyncio
import time

from devtools.bench import loadgen
from devtools.bench.loadgen import UNAVAILABLE, LoadGenerator

_WATCH_S = 0.5


class KeepingLoadGenerator(LoadGenerator):
    def __init__(self, *args, on_answer=None, **kwargs):
        super().__init__(*args, on_answer=self._answered, **kwargs)
        self._user_on_answer = on_answer
        self.kept = 0  # events kept after their last retransmission or a bare 5.03
        self._watch = None

    async def open(self) -> None:
        await super().open()
        self._watch = asyncio.get_running_loop().call_later(_WATCH_S, self._separate_lost)

    def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        super().close()

    def _separate_lost(self) -> None:
        """Keep events acknowledged empty whose answer is overdue (all copies lost)."""
        overdue = time.perf_counter() - 16 * loadgen.ACK_TIMEOUT
        for inflight in list(self._inflight.values()):
            if inflight.acked and inflight.first_sent < overdue:
                self._give_up(inflight)
        self._watch = asyncio.get_running_loop().call_later(_WATCH_S, self._separate_lost)

    def _give_up(self, inflight) -> None:
        self.kept += 1
        self._forget(inflight, back_off_s=loadgen.ACK_TIMEOUT)
        self._after_completion()

    def _answered(self, request, msg, answer) -> None:
        if msg.code == UNAVAILABLE and answer is None:
            self.kept += 1
            self.workload.queues[request.device].appendleft(request)
        if self._user_on_answer is not None:
            self._user_on_answer(request, msg, answer)

    async def run_until_all_answered(self, *, window: int, rounds: int = 20,
                                     round_s: float = 30.0) -> int:
        """Send what the devices still hold until nothing is left (bounded rounds);
        returns how many events are still held at the end (0 = all answered)."""
        for _ in range(rounds):
            if not self.workload.pending():
                break
            await self.run(duration_s=round_s, window=window, drain_s=120)
            # Kept events come back after a back-off: let those timers fire first, so
            # no device is idle twice (a device has one event in flight at a time).
            await asyncio.sleep(loadgen.ACK_TIMEOUT * 1.5 + 0.2)
        return self.workload.pending()
