"""One CoAP port, one deployment: which database a port's ingest processes serve.

aiocoap binds with SO_REUSEPORT so that the ingest processes of one deployment share a
port (docs/deployment.md). The kernel lets any process of the same user join, though:
a second `replenish run` with another database joined silently and a device's events
alternated between two backends (issue 16). So every ingest process records the
deployment it belongs to (its database) in a small owner file per port, and holds a
shared `flock` on it for as long as it runs:

- no live holder: the port is free for us; we write our deployment and hold the lock;
- live holders of the same database: we join them (SO_REUSEPORT siblings, or more
  `replenish run --role ingest` processes against the same database);
- live holders of another database: refused, naming it.

The kernel releases the lock when a process dies, however it dies, so a stale file
never blocks a start. Claimers take turns under a second, exclusive lock file, so two
starting at once cannot both find the port free. Another user's process, or a program
that is not Replenish, is refused by the kernel itself (no SO_REUSEPORT sharing
across users): `bind` fails with EADDRINUSE, which `replenish run` reports.

Owner files are per user, in `REPLENISH_RUN_DIR` (default: the system's temporary
folder) under `replenish-<uid>/`, mode 0700.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from pathlib import Path

from backend.errors import ConfigError

log = logging.getLogger(__name__)


class PortOwner:
    """This process's share of a CoAP port; `release()` (or process exit) lets go."""

    def __init__(self, port: int, fd: int):
        self.port = port
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = -1


def _folder(run_dir: Path) -> Path:
    folder = run_dir / f"replenish-{os.getuid()}"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def claim(run_dir: Path, port: int, deployment: str) -> PortOwner:
    """Join `port` as a process of `deployment` (a description of its database), or
    raise ConfigError if live processes of another deployment hold it."""
    folder = _folder(run_dir)
    turn = os.open(folder / f"coap-{port}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(turn, fcntl.LOCK_EX)  # one claimer at a time; held for milliseconds
        fd = os.open(folder / f"coap-{port}.owner", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # live holders: whose is it?
                holder = _read(fd)
                if holder.get("deployment") != deployment:
                    raise ConfigError(
                        f"udp port {port} is already served by another Replenish "
                        f"deployment (database {holder.get('deployment', '?')}, pid "
                        f"{holder.get('pid', '?')}): one CoAP port serves one database. "
                        f"Stop that one, or give this one another port "
                        f"(REPLENISH_COAP_PORT or --coap-port)") from None
                fcntl.flock(fd, fcntl.LOCK_SH)
                log.info("udp port %d: joining the ingest processes of this deployment "
                         "(pid %s first)", port, holder.get("pid", "?"))
            else:  # nobody alive holds it: it is ours now
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps({"deployment": deployment,
                                          "pid": os.getpid()}).encode(), 0)
                fcntl.flock(fd, fcntl.LOCK_SH)  # under our turn: no one slips in between
        except BaseException:
            os.close(fd)
            raise
        return PortOwner(port, fd)
    finally:
        os.close(turn)


def _read(fd: int) -> dict:
    with contextlib.suppress(ValueError, OSError):
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    return {}
