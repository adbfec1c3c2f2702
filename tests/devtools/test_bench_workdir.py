"""`make bench` leaves no work folder behind (a full run's databases and server logs are
about 170 MB), unless asked to keep it or the run fails: then it says where it is.
A tiny fleet-day-only run on SQLite, not timed."""

from __future__ import annotations

import tempfile

import pytest

from devtools.bench import __main__ as bench

TINY = ["--fleet-only", "--no-postgres", "--no-firmware", "--fleet-devices", "1500",
        "--devices", "10", "--window", "8", "--fleet-window", "16", "--warmup-s", "0.2",
        "--phase-s", "0.3", "--fleet-kind-s", "0.2", "--drain-s", "2",
        "--fleet-max-rate", "400", "--fixed-rate", "100"]


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def _workdirs(folder) -> list:
    return sorted(folder.glob("replenish-bench-*"))


def test_a_run_removes_its_work_folder(scratch, capsys):
    assert bench.main(TINY) == 0
    assert '"ratio_fleet_vs_bare_event_path_settings"' in capsys.readouterr().out
    assert _workdirs(scratch) == []


def test_a_run_asked_to_keep_it_says_where_it_is(scratch, capsys):
    assert bench.main(TINY + ["--keep-workdir"]) == 0
    kept = _workdirs(scratch)
    assert len(kept) == 1 and (kept[0] / "fleet-day-sqlite" / "server.log").is_file()
    assert f"kept in {kept[0]}" in capsys.readouterr().err


def test_a_failed_run_keeps_it_and_says_where_it_is(scratch, capsys, monkeypatch):
    async def fails(config, *args, **kwargs):
        raise RuntimeError("the fleet day broke")

    monkeypatch.setattr(bench, "fleet_day", fails)
    with pytest.raises(RuntimeError, match="fleet day broke"):
        bench.main(TINY)
    kept = _workdirs(scratch)
    assert len(kept) == 1
    assert f"kept in {kept[0]}" in capsys.readouterr().err
