"""A short form of `make firmware-sim`: every board profile through a device's life on
its simulated chip against the real backend, with a few power-cut wakes each."""

from devtools.esp32sim.__main__ import run
from devtools.esp32sim.world import BOARDS


def test_every_board_lives_through_setup_presses_outage_and_power_cuts(tmp_path, capsys):
    boards = sorted(BOARDS.glob("*.json"))
    total = run(boards, sweep=4, seed=15, work=tmp_path)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(boards) + 1  # one JSON line per board and the summary
    assert total["boards"] == len(boards)
    assert total["wakes"] >= 30 * len(boards)
    assert (total["seq_reused"], total["queued_lost"], total["unrecoverable_boots"],
            total["failures"]) == (0, 0, 0, 0), lines
    for board, awake in total["awake_ms_per_press"].items():
        assert awake and total["presses_per_cell"][board] > 10000, board
