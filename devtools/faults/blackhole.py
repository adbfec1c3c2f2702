"""A blackholed HTTP endpoint: it accepts connections, reads what comes, and never
answers (issue 16: one household's webhook like this held every household's orders).
It counts connections, and the most it held open at once."""

from __future__ import annotations

import socket
import threading


class Blackhole:
    def __init__(self, host: str = "127.0.0.1"):
        self._listener = socket.create_server((host, 0), backlog=64)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://{host}:{self.port}/hook"
        self._lock = threading.Lock()
        self.accepted = 0
        self.open = 0
        self.most_open = 0
        self.bytes_in = 0
        self._conns: list[socket.socket] = []
        self._closing = False
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> Blackhole:
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._closing = True
        self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(10)

    def _accept(self) -> None:
        while not self._closing:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self.open += 1
                self.most_open = max(self.most_open, self.open)
                self._conns.append(conn)
            threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    def _hold(self, conn: socket.socket) -> None:
        """Read until the caller gives up; answer nothing."""
        try:
            while chunk := conn.recv(65536):
                with self._lock:
                    self.bytes_in += len(chunk)
        except OSError:
            pass
        finally:
            with self._lock:
                self.open -= 1
                self._conns.remove(conn)
            conn.close()
