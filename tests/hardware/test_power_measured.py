"""`replenish provision power-budget` uses the simulation's measurement (make
firmware-sim --record: the shipped main.py on the board's simulated chip) instead of
estimates, and says so."""

from __future__ import annotations

import json

import pytest

from devtools.esp32sim.__main__ import RECORDED, record
from hardware import power
from hardware.validate import all_boards, load_board

BOARDS = [path.stem for path in all_boards()]


@pytest.mark.parametrize("board", BOARDS)
def test_every_board_has_a_measurement_and_power_budget_uses_it(board):
    found = power.measured(board)
    assert found is not None, f"make firmware-sim SIM_ARGS=--record has not measured {board}"
    budget = power.budget(load_board(board))
    assert (budget.press_mas, budget.sleep_ua, budget.periodic_mas_per_day) == (
        found["mas_per_press"], found["sleep_ua"], found["periodic_mas_per_day"])
    shown = power.table(budget)
    assert "make firmware-sim" in shown and f"{found['awake_ms_per_press']:.0f} ms awake" in shown
    assert power.ESTIMATE not in shown


def test_a_board_without_a_measurement_falls_back_to_the_estimate(tmp_path, monkeypatch):
    monkeypatch.setattr(power, "MEASURED_DIR", tmp_path)
    budget = power.budget(load_board(BOARDS[0]))
    assert budget.source == power.ESTIMATE and budget.awake_ms_per_press is None


def test_record_writes_what_the_simulation_measured(tmp_path):
    line = {"board": "x-board", **{key: 1.5 for key in RECORDED}, "chip": "esp32c3"}
    written = json.loads(record(line, tmp_path).read_text())
    assert {k: written[k] for k in RECORDED} == {k: line[k] for k in RECORDED}
    assert written["source"].startswith("make firmware-sim on ")
