"""Safe starts and stops (issue 16, point 5), as an operator meets them.

- an unmigrated (or too new) database is refused with "run `replenish db upgrade`";
- a CoAP port serves one deployment: a second one is refused in one line, processes of
  the same database share it, and a killed holder never blocks a start;
- `replenish run` twice on one data folder: one line, no traceback;
- SIGTERM stops everything within a few seconds while a household webhook hangs;
- the data folder is 0700, the database and secret files 0600.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy import text

from backend.coap import port_owner
from backend.errors import ConfigError
from backend.runtime import STOP_DEADLINE_S, Backend
from backend.storage import db
from tests.conftest import BackendThread
from tests.backend.test_cli import REPLENISH, ROOT, Cli



def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- the schema --------------------------------------------------------------------------

def test_an_empty_database_is_refused_with_what_to_run(settings, db_url):
    empty = settings.with_(database_url=_fresh(db_url, settings))
    with pytest.raises(ConfigError, match=r"has no schema yet, not \d+: run `replenish db "
                                          r"upgrade` first"):
        Backend(empty)


def test_an_older_schema_is_refused_and_a_newer_one_named(settings, db_url):
    url = _fresh(db_url, settings)
    db.upgrade(url, "0005")
    with pytest.raises(ConfigError, match="is at schema revision 0005, not .*: run "
                                          "`replenish db upgrade` first"):
        Backend(settings.with_(database_url=url))
    db.upgrade(url)
    engine = db.make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(ConfigError, match="revision 9999, which this version of Replenish "
                                          "does not know"):
        Backend(settings.with_(database_url=url))


def _fresh(db_url: str, settings) -> str:
    """Another empty database next to the test's (a new file; a new PostgreSQL db)."""
    if db_url.startswith("sqlite"):
        return f"sqlite:///{settings.data_dir / 'other' / 'fresh.db'}"
    from sqlalchemy.engine import make_url

    import psycopg

    parsed = make_url(db_url)
    name = parsed.database + "_fresh"
    admin = parsed.set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}"')
        c.execute(f'CREATE DATABASE "{name}"')
    return parsed.set(database=name).render_as_string(hide_password=False)


def test_replenish_run_on_a_never_upgraded_database_says_so_and_exits(tmp_path):
    cli = Cli(tmp_path / "data")
    cli.env.update(REPLENISH_COAP_PORT="0", REPLENISH_HTTP_PORT="0",
                   REPLENISH_COAP_HOST="127.0.0.1", REPLENISH_RUN_DIR=str(tmp_path))
    done = cli("run", ok=False)
    assert done.returncode == 1
    assert re.search(r"^error: the database at sqlite:///\S+ has no schema yet, not \d+: "
                     r"run `replenish db upgrade` first$", done.stderr, re.M), done.stderr
    assert len([line for line in done.stderr.splitlines() if "error" in line.lower()]) == 1


# -- the CoAP port -----------------------------------------------------------------------

def test_port_owner_joins_its_deployment_and_refuses_another(tmp_path):
    first = port_owner.claim(tmp_path, 5999, "sqlite:////a/replenish.db")
    sibling = port_owner.claim(tmp_path, 5999, "sqlite:////a/replenish.db")
    with pytest.raises(ConfigError, match=r"udp port 5999 is already served by another "
                                          r"Replenish deployment \(database "
                                          r"sqlite:////a/replenish.db, pid \d+\)"):
        port_owner.claim(tmp_path, 5999, "sqlite:////b/replenish.db")
    first.release()
    with pytest.raises(ConfigError):  # the sibling still serves the port
        port_owner.claim(tmp_path, 5999, "sqlite:////b/replenish.db")
    sibling.release()
    port_owner.claim(tmp_path, 5999, "sqlite:////b/replenish.db").release()
    folder = tmp_path / f"replenish-{os.getuid()}"
    assert _mode(folder) == 0o700


def test_a_killed_holder_never_blocks_the_port(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from backend.coap.port_owner import claim; "
         "claim(Path(sys.argv[1]), 5998, 'postgresql://u:***@h/a'); print('held', flush=True); "
         "time.sleep(60)", str(tmp_path)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match="postgresql://u:\\*\\*\\*@h/a"):
            port_owner.claim(tmp_path, 5998, "postgresql://u:***@h/b")
    finally:
        holder.kill()
        holder.wait(30)
    port_owner.claim(tmp_path, 5998, "postgresql://u:***@h/b").release()


class _HeldPort:
    """A port on 127.0.0.1 held by a socket of the test until `release()`, so that no
    other worker's socket can take it between the choice and `replenish run`'s bind (a
    port only probed free could be: the kernel hands out ephemeral ports at random).
    The holder shares it as `replenish run` does: SO_REUSEPORT for UDP (aiocoap's
    option), SO_REUSEADDR and never listening for TCP (the web server's option)."""

    def __init__(self, kind=socket.SOCK_DGRAM):
        self._sock = socket.socket(socket.AF_INET, kind)
        option = socket.SO_REUSEPORT if kind == socket.SOCK_DGRAM else socket.SO_REUSEADDR
        self._sock.setsockopt(socket.SOL_SOCKET, option, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]

    def release(self) -> None:
        self._sock.close()


class Run:
    """`replenish run` in the background, its log collected."""

    def __init__(self, cli: Cli, *args: str, **env: str):
        self.lines: list[str] = []
        self.proc = subprocess.Popen([str(REPLENISH), "run", *args],
                                     env={**cli.env, **env}, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_for(self, pattern: str, timeout_s: float = 60) -> re.Match:
        for _ in range(int(timeout_s * 10)):
            if m := re.search(pattern, "".join(self.lines)):
                return m
            assert self.proc.poll() is None, "".join(self.lines)
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} in:\n{''.join(self.lines)}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)
        self._reader.join(10)

    @property
    def log(self) -> str:
        return "".join(self.lines)


def _cli(tmp_path, name: str, coap_port: int, http_port: int) -> Cli:
    cli = Cli(tmp_path / name)
    cli.env.update(REPLENISH_COAP_HOST="127.0.0.1", REPLENISH_COAP_PORT=str(coap_port),
                   REPLENISH_HTTP_PORT=str(http_port), REPLENISH_RUN_DIR=str(tmp_path))
    cli("db", "upgrade")
    return cli


def test_a_second_deployment_on_the_coap_port_is_refused_in_one_line(tmp_path):
    held = _HeldPort()
    coap = held.port
    first = Run(_cli(tmp_path, "first", coap, 0), "--role", "ingest")
    try:
        first.wait_for(rf"CoAP ingest listening on udp 127\.0\.0\.1:{coap} ")
        held.release()  # the port is first's now
        # The same database: one deployment, more processes on its port (SO_REUSEPORT).
        same = Run(_cli(tmp_path, "first", coap, 0), "--role", "ingest")
        try:
            same.wait_for(r"joining the ingest processes of this deployment")
            same.wait_for(rf"CoAP ingest listening on udp 127\.0\.0\.1:{coap} ")
        finally:
            same.stop()

        second = _cli(tmp_path, "second", coap, 0)("run", "--role", "ingest", ok=False)
        assert second.returncode == 1
        errors = [line for line in second.stderr.splitlines() if line.startswith("error:")]
        assert errors == [
            f"error: udp port {coap} is already served by another Replenish deployment "
            f"(database sqlite:///{(tmp_path / 'first' / 'replenish.db').resolve()}, pid "
            f"{first.proc.pid}): one CoAP port serves one database. Stop that one, or give "
            f"this one another port (REPLENISH_COAP_PORT or --coap-port)"], second.stderr
        assert "listening" not in second.stderr
    finally:
        held.release()
        first.stop()
    assert first.proc.returncode == 0, first.log


def test_a_port_held_by_another_program_is_one_line(tmp_path):
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as other:  # no SO_REUSEPORT
        other.bind(("::", 0))
        done = _cli(tmp_path, "d", other.getsockname()[1], 0)("run", "--role", "ingest",
                                                            ok=False)
    assert done.returncode == 1
    assert re.search(r"^error: udp port \d+ on 127.0.0.1 is in use by a program that does "
                     r"not share it", done.stderr, re.M), done.stderr


def test_replenish_run_twice_on_one_data_folder_is_one_clear_line(tmp_path):
    held = [_HeldPort(), _HeldPort(socket.SOCK_STREAM)]
    coap, http = (h.port for h in held)
    cli = _cli(tmp_path, "data", coap, http)
    first = Run(cli)
    try:
        first.wait_for("web app listening")
        for h in held:  # the ports are first's now
            h.release()
        again = cli("run", ok=False)  # Cli asserts: no traceback
        assert again.returncode == 1
        assert [line for line in again.stderr.splitlines() if "error" in line.lower()] == [
            f"error: tcp port {http} on 127.0.0.1 is in use (is `replenish run` already "
            f"running here?): stop it, or set REPLENISH_HTTP_PORT / --http-port"]
        assert "listening" not in again.stderr, "refused before it took the CoAP port"
    finally:
        for h in held:
            h.release()
        first.stop()


# -- SIGTERM -----------------------------------------------------------------------------

class Blackhole:
    """An HTTP server that accepts connections and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = threading.Event()
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            self.accepted.set()

    def close(self):
        for conn in self.held:
            conn.close()
        self.sock.close()


def test_sigterm_stops_within_seconds_while_a_webhook_hangs(tmp_path):
    from backend.accounts import households
    from backend.orders import notifications

    hole = Blackhole()
    cli = _cli(tmp_path, "data", 0, 0)
    with db.transaction(f"sqlite:///{cli.data_dir / 'replenish.db'}") as session:
        home, _token = households.create(session, "Home")
        home.webhook_url = f"http://127.0.0.1:{hole.port}/hook"
        for n in range(3):
            notifications.notify(session, home.id, "order_placed", f"order {n}")
    run = Run(cli, "--role", "worker", REPLENISH_WORKER_POLL_S="0.05",
              # Outbound address policy (issue 16, point 2): loopback only when allowed.
              REPLENISH_WEBHOOK_ALLOW_NETWORKS="127.0.0.0/8")
    try:
        run.wait_for("order worker running")
        assert hole.accepted.wait(60), run.log  # the worker is inside the webhook call
        run.proc.send_signal(signal.SIGTERM)
        # Bounded by the stop itself (STOP_GRACE_S per part); the webhook's own timeout
        # and the worker's join were 10 s and 30 s: waiting for them would not fit.
        run.proc.wait(STOP_DEADLINE_S)
        run._reader.join(10)
        assert run.proc.returncode == 0, run.log
        # Either the worker let go of the call itself (outbound isolation) or the stop
        # left it behind ("not waiting for it"): both end within the bound above.
        assert "backend.runtime: stopped" in run.log
        assert "Traceback" not in run.log
    finally:
        run.stop()
        hole.close()


# -- file modes --------------------------------------------------------------------------

def test_a_new_data_folder_is_private(tmp_path):
    cli = Cli(tmp_path / "data")
    cli("db", "upgrade")
    assert _mode(cli.data_dir) == 0o700
    assert _mode(cli.data_dir / "replenish.db") == 0o600


def test_an_older_open_data_folder_is_tightened_at_start(settings, tmp_path):
    files = [tmp_path / "replenish.db"] if settings.db_url.startswith("sqlite") else []
    tmp_path.chmod(0o755)
    for path in files:
        path.chmod(0o644)
    with BackendThread(settings.with_(web_secret_key="")):
        written = [*files, tmp_path / "web-secret.key"]
        if files:
            written += [tmp_path / "replenish.db-wal", tmp_path / "replenish.db-shm"]
        assert _mode(tmp_path) == 0o700
        assert {path.name: _mode(path) for path in written} == {
            path.name: 0o600 for path in written}
