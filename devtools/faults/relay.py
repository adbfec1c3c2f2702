"""A lossy UDP relay on loopback: devices talk to it, it talks to the backend, and in
both directions it drops, duplicates, delays and reorders datagrams (seeded).

Each device address gets its own upstream socket, so the backend still sees one
remote per device (aiocoap keeps message-id state per remote). Runs its own event loop
in a thread, so that subprocess devices (the firmware on the MicroPython unix port) and
an asyncio load generator can both use it.
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class Faults:
    drop: float = 0.2  # probability a datagram is lost
    duplicate: float = 0.1  # probability it arrives twice
    reorder: float = 0.1  # probability it is held back behind later ones
    delay_s: float = 0.03  # each datagram is delayed uniformly in [0, delay_s]
    reorder_delay_s: float = 0.15  # how long a reordered one is held back
    # Faults dealt to the first datagrams in each direction before the dice take over
    # ("drop", "duplicate" or "pass"), so a test can count on each kind happening at
    # least once whatever the seed.
    scripted: tuple[str, ...] = ()


class LossyRelay:
    def __init__(self, upstream: tuple[str, int], faults: Faults, seed: int):
        self.upstream = upstream
        self.faults = faults
        self.seed = seed
        self._rng = random.Random(seed)
        self.stats: Counter = Counter()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="relay",
                                        daemon=True)
        self._listener: asyncio.DatagramTransport | None = None
        self._upstreams: dict[tuple, socket.socket] = {}

    def __enter__(self) -> LossyRelay:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._open(), self._loop).result(10)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _open(self) -> None:
        relay = self

        class FromDevices(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                relay._from_device(data, addr)

        self._listener, _ = await self._loop.create_datagram_endpoint(
            FromDevices, local_addr=("127.0.0.1", 0))
        self.port = self._listener.get_extra_info("sockname")[1]

    async def _close(self) -> None:
        for upstream in self._upstreams.values():
            self._loop.remove_reader(upstream.fileno())
            upstream.close()
        self._listener.close()

    def _from_device(self, data: bytes, device: tuple) -> None:
        upstream = self._upstreams.get(device)
        if upstream is None:
            upstream = self._upstreams[device] = socket.socket(socket.AF_INET,
                                                               socket.SOCK_DGRAM)
            upstream.setblocking(False)
            upstream.connect(self.upstream)
            self._loop.add_reader(upstream.fileno(), self._from_backend, upstream, device)
        self._forward(data, upstream.send, "up")

    def _from_backend(self, upstream: socket.socket, device: tuple) -> None:
        for _ in range(64):  # what is waiting, bounded
            try:
                data = upstream.recv(65536)
            except (BlockingIOError, ConnectionRefusedError):
                return  # nothing more; or the backend's port is closed for now
            self._forward(data, lambda d: self._send_down(d, device), "down")

    def _send_down(self, data: bytes, device: tuple) -> None:
        self._listener.sendto(data, device)

    def _forward(self, data: bytes, send, direction: str) -> None:
        """`send(data)` later, never, or twice, as the faults and the dice say."""
        f, rng = self.faults, self._rng
        nth = self.stats[f"{direction}_in"]
        self.stats[f"{direction}_in"] += 1
        fate = f.scripted[nth] if nth < len(f.scripted) else None
        if fate == "drop" or (fate is None and rng.random() < f.drop):
            self.stats[f"{direction}_dropped"] += 1
            return
        copies = 2 if fate == "duplicate" or (fate is None and rng.random() < f.duplicate) \
            else 1
        self.stats[f"{direction}_duplicated"] += copies - 1
        for _ in range(copies):
            delay = rng.uniform(0, f.delay_s)
            if rng.random() < f.reorder:
                delay += f.reorder_delay_s
                self.stats[f"{direction}_reordered"] += 1
            self._loop.call_later(delay, _quietly, send, data)


def _quietly(send, data: bytes) -> None:
    try:
        send(data)
    except OSError:  # the backend's port closed for a moment: a loss like any other
        pass
