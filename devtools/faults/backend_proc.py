"""The real backend as a subprocess in its own process group, so that a SIGKILL takes
down everything it started (the ingest writer process, its forkserver) at once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_LISTENING = re.compile(r"CoAP ingest listening on udp [\d.]+:(\d+)")
_START_TIMEOUT_S = 60


class BackendProcess:
    """`python -m backend run --role ingest --role engine` (the backend's own CLI; the
    scenario shortens the outbox lease with REPLENISH_OUTBOX_LEASE_S); every line it logs
    is appended to `log_path`."""

    def __init__(self, env: dict, log_path: Path, roles=("ingest", "engine"),
                 verbose: bool = False):
        self.env = env
        self.verbose = verbose
        self.log_path = log_path
        self.roles = roles
        self.port = 0  # 0 the first time: the backend reports the port it got
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        argv = [sys.executable, "-m", "backend", *(["-v"] if self.verbose else []),
                "run", "--coap-port", str(self.port)]
        for role in self.roles:
            argv += ["--role", role]
        env = {**self.env, "REPLENISH_COAP_PORT": str(self.port)}  # `--coap-port 0` is unset
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True)
        self.starts += 1
        seen = threading.Event()
        found: list[int] = []

        def read(stream=self.proc.stderr):
            with open(self.log_path, "a") as log:
                for line in stream:
                    log.write(line)
                    log.flush()
                    if not seen.is_set() and (match := _LISTENING.search(line)):
                        found.append(int(match.group(1)))
                        seen.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not seen.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"backend did not start; see {self.log_path}")
        if self.port and found[0] != self.port:
            raise RuntimeError(f"backend came back on port {found[0]}, not {self.port}")
        self.port = found[0]

    def kill(self) -> None:
        """SIGKILL the whole process group and reap the leader."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)
        self._reap()

    def _reap(self) -> None:
        if self._reader is not None:
            self._reader.join(10)
        self.proc.stderr.close()
        self.proc = None

    def stop(self) -> int | None:
        """SIGTERM (a clean stop) and wait; the exit code."""
        if self.proc is None:
            return None
        self.proc.terminate()
        try:
            code = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        self._reap()
        return code
