"""The overload guard's socket sign, on a real UDP socket (tests/backend/coap/test_overload.py has
the backlog sign through the whole backend)."""

import asyncio
import socket

from backend.coap.server import OverloadGuard, OverloadPolicy


def test_a_filling_receive_buffer_is_overload_and_an_emptied_one_is_not():
    """The other sign of overload: the CoAP socket's receive queue past `socket_fill`
    of its buffer (the event loop is behind; past 100 % the kernel drops datagrams)."""

    class NoBacklog:
        def waiting(self) -> int:
            return 0

    async def scenario():
        guard = OverloadGuard(NoBacklog(), OverloadPolicy(receive_buffer_bytes=256 * 1024))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            server.bind(("127.0.0.1", 0))
            server.setblocking(False)
            guard.watch_socket(server)
            size = server.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            assert size >= 256 * 1024, "the guard asks for a bigger receive buffer"
            await asyncio.sleep(0.05)
            assert not guard.overloaded()
            sent = 0
            for _ in range(5000):  # bounded: until the sampler sees the queue half full
                client.sendto(bytes(100), server.getsockname())
                sent += 1
                if sent % 50 == 0:
                    await asyncio.sleep(0.02)
                    if guard.overloaded():
                        break
            assert guard.overloaded(), f"{sent} unread datagrams never counted as overload"
            while True:  # the event loop catches up
                try:
                    server.recv(2048)
                except BlockingIOError:
                    break
            await asyncio.sleep(0.05)
            assert not guard.overloaded()
            guard._socket = None  # stops the sampler

    asyncio.run(scenario())
