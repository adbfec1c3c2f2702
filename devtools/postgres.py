"""A throwaway PostgreSQL server for the test session (real server, loopback only)."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from devtools.system import program, unavailable

_PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"


class PostgresServer:
    def __init__(self, settings: dict[str, str] | None = None):
        # Server settings beyond the defaults below, as `-c name=value` (for example
        # devtools/bench/pg_server_time.py's pg_stat_statements).
        self.settings = dict(settings or {})
        self.initdb = program("initdb", "postgresql", _PG_BIN_GLOB)
        self.pg_ctl = str(Path(self.initdb).with_name("pg_ctl"))
        self.port: int | None = None  # chosen by start()
        self.dir = Path(tempfile.mkdtemp(prefix="replenish-pg-"))
        self.data = self.dir / "data"
        self.counter = 0

    def _as_postgres(self, *argv: str) -> subprocess.CompletedProcess:
        if os.geteuid() == 0:  # initdb refuses to run as root
            _ensure_postgres_user()
            shutil.chown(self.dir, "postgres")
            argv = ("runuser", "-u", "postgres", "--", *argv)
        return subprocess.run(argv, capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        # The port is held by a socket of ours (SO_REUSEADDR, never listening, as
        # PostgreSQL binds with SO_REUSEADDR) until the server listens on it: a port
        # only probed free could be taken by another process's socket during initdb,
        # and the server would not start.
        with socket.socket() as held:
            held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            held.bind(("127.0.0.1", 0))
            self.port = held.getsockname()[1]
            self._start()

    def _start(self) -> None:
        done = self._as_postgres(self.initdb, "-D", str(self.data), "-A", "trust",
                                 "-U", "postgres", "--no-sync")
        if done.returncode != 0:
            unavailable(f"initdb failed: {done.stderr[-500:]}")
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                   "-c fsync=on -c max_connections=200"
                   + "".join(f" -c {name}={value}" for name, value in self.settings.items()))
        done = self._as_postgres(self.pg_ctl, "-D", str(self.data), "-o", options,
                                 "-l", str(self.dir / "log"), "-w", "-t", "60", "start")
        if done.returncode != 0:
            log = (self.dir / "log").read_text() if (self.dir / "log").exists() else ""
            unavailable(f"PostgreSQL did not start: {done.stderr[-300:]} {log[-500:]}")

    def stop(self) -> None:
        # immediate: no shutdown checkpoint, which took 20 s after a session's hundreds
        # of databases; the data folder is deleted next anyway.
        self._as_postgres(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    def postmaster_pid(self) -> int | None:
        """The running server's main process (its data folder's postmaster.pid)."""
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError):
            return None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        import psycopg

        self.counter += 1
        name = f"t{os.getpid()}_{self.counter}_{int(time.time() * 1000) % 100000}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _ensure_postgres_user() -> None:
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)


class ExternalPostgres:
    """A server the developer points to with DATABASE_URL: a fresh database per test."""

    def __init__(self, url: str):
        from sqlalchemy.engine import make_url

        self._url = make_url(url.replace("postgresql://", "postgresql+psycopg://", 1))
        self.counter = 0

    def new_database(self) -> str:
        import psycopg

        self.counter += 1
        name = f"replenish_t{os.getpid()}_{self.counter}_{int(time.time() * 1000) % 100000}"
        admin = self._url.set(database="postgres").render_as_string(hide_password=False)
        with psycopg.connect(admin.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self._url.set(database=name).render_as_string(hide_password=False)
