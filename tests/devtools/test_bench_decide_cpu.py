"""devtools/bench/decide_cpu.py: every repetition decides the same events, and leaves
the database as it found it (otherwise the second would time stale-seq refusals)."""

from __future__ import annotations

import json
import secrets

from sqlalchemy import func, select

from backend.accounts.keys import Keyring
from backend.storage import db
from backend.storage.models import Device, Event
from devtools.bench import decide_cpu, fleetday


def test_repeated_decisions_leave_nothing_behind(tmp_path):
    kek = secrets.token_bytes(32)
    url = f"sqlite:///{tmp_path / 'd.db'}"
    pools = fleetday.provision_fleet_day(url, kek, 2000)
    engine = db.make_engine(url)
    sessions = db.make_sessionmaker(engine, writer=True)
    workload = fleetday.FleetWorkload(pools, None, seed=1)
    workload.prepare(70)
    requests = [queue[0].payload for queue in workload.queues]
    assert decide_cpu.least_cpu_us_per_event(sessions, Keyring(kek), requests, 2) > 0
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 0
        assert session.scalar(select(func.max(Device.last_seq))) == 0
    engine.dispose()


def test_the_command_prints_one_line_per_run_with_each_kind(capsys):
    assert decide_cpu.main(["--devices", "2000", "--events", "64", "--reps", "1",
                            "--kinds", "mix,level"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["mix_cpu_us_per_event"] > 0 and line["level_cpu_us_per_event"] > 0
