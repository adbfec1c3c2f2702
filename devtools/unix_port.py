"""A MicroPython unix-port "device" that mpremote can drive, for flashing without silicon.

mpremote speaks the raw REPL over a serial port. A bare pseudo-terminal rejects
pyserial's RTS/DTR ioctls, so instead this adapter listens on loopback TCP and, for
each connection, starts `micropython -i` on a fresh pseudo-terminal in raw mode whose
working directory is the device's "flash" (`root`), relaying bytes both ways.
mpremote connects with pyserial's `socket://127.0.0.1:PORT` URL, where RTS/DTR are
no-ops. Files written persist in `root` between connections, as on a real board.

    with UnixPortDevice(root) as device:
        subprocess.run(["mpremote", "connect", device.url, "resume", "fs", "ls"])

`resume` is needed: a soft reset (Ctrl-D in the raw REPL) ends the unix port.
"""

from __future__ import annotations

import os
import pty
import select
import shutil
import socket
import subprocess
import sys
import threading
import tty
from pathlib import Path

_CHUNK = 4096
_POLL_S = 0.2


def micropython_binary() -> str:
    found = Path(sys.executable).with_name("micropython")
    return str(found) if found.exists() else (shutil.which("micropython") or "micropython")


class UnixPortDevice:
    def __init__(self, root: Path, binary: str | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.binary = binary or micropython_binary()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.connections = 0

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def __enter__(self) -> UnixPortDevice:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._server.close()
        self._thread.join(10)

    def serve_forever(self) -> None:
        self._serve()

    def _serve(self) -> None:
        self._server.settimeout(_POLL_S)
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            with conn:
                self._relay(conn)

    def _relay(self, conn: socket.socket) -> None:
        master, slave = pty.openpty()
        tty.setraw(slave)
        proc = subprocess.Popen([self.binary, "-i"], stdin=slave, stdout=slave, stderr=slave,
                                cwd=self.root, start_new_session=True)
        os.close(slave)
        try:
            while not self._stop.is_set() and proc.poll() is None:
                ready, _, _ = select.select([conn, master], [], [], _POLL_S)
                if conn in ready:
                    data = conn.recv(_CHUNK)
                    if not data:
                        break
                    os.write(master, data)
                if master in ready:
                    try:
                        data = os.read(master, _CHUNK)
                    except OSError:  # the interpreter exited
                        break
                    conn.sendall(data)
        finally:
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            os.close(master)
