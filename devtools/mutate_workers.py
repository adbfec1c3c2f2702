"""`cosmic-ray http-worker` processes for `make mutate --workers N`, each in its own copy
of the tree (a worker writes its mutant into the file on disk, so two workers can never
share one). cosmic-ray's http distributor hands each worker one mutant at a time."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


class HttpWorkers:
    """One http-worker per tree, started on entry and stopped on exit."""

    def __init__(self, trees: list[Path], log_dir: Path):
        self.trees = trees
        self.log_dir = log_dir
        self.urls: list[str] = []
        self._procs: list[subprocess.Popen] = []
        self._logs: list = []

    def __enter__(self) -> HttpWorkers:
        command = str(Path(sys.executable).with_name("cosmic-ray"))
        for index, tree in enumerate(self.trees):
            port = _free_port()
            log = (self.log_dir / f"worker-{index}.log").open("w")
            self._logs.append(log)
            self._procs.append(subprocess.Popen(
                [command, "http-worker", "--port", str(port)], cwd=tree, stdout=log,
                stderr=subprocess.STDOUT))
            self.urls.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 60  # a loaded machine starts Python slowly
        for url, proc in zip(self.urls, self._procs):
            port = int(url.rsplit(":", 1)[1])
            while not _listening(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    self.__exit__()
                    sys.exit(f"the mutation worker on port {port} did not start "
                             f"(see {self.log_dir}/worker-*.log)")
                time.sleep(0.1)  # bounded poll: until the worker accepts connections
        return self

    def __exit__(self, *exc) -> None:
        for proc in self._procs:
            proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._procs.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()
