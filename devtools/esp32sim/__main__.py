"""make firmware-sim: every board profile through a device's life on its simulated
chip against the real backend; one JSON line per board, then a summary line.

    python -m devtools.esp32sim [--sweep N] [--boards a.json,b.json] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

from devtools.esp32sim.life import live, summary
from devtools.esp32sim.world import BOARDS, Backend_


def run(boards: list[Path], sweep: int, seed: int, work: Path) -> dict:
    lines = []
    with Backend_(work / "backend") as backend:
        for i, board in enumerate(boards):
            rng = random.Random(seed * 1000 + i)
            life = live(board, backend, work / board.stem, rng, sweep_wakes=sweep)
            device_id = json.loads((life.device.flash / "bundle" / "identity.json").read_text()
                                   )["device_id"]
            line = summary(life, backend, device_id)
            lines.append(line)
            print(json.dumps(line), flush=True)
    total = {
        "boards": len(lines),
        "wakes": sum(x["wakes"] for x in lines),
        "power_cuts": sum(x["power_cuts"] for x in lines),
        "seq_reused": sum(x["seq_reused"] for x in lines),
        "queued_lost": sum(x["queued_lost"] for x in lines),
        "unrecoverable_boots": sum(x["unrecoverable_boots"] for x in lines),
        "failures": sum(x["failure_count"] for x in lines),
        "awake_ms_per_press": {x["board"]: x["awake_ms_per_press"] for x in lines},
        "presses_per_cell": {x["board"]: x["presses_per_cell"] for x in lines},
    }
    print(json.dumps(total), flush=True)
    return total


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", type=int, default=150, help="power-cut wakes per board")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--boards", default="", help="comma-separated profile files")
    args = parser.parse_args(argv)
    boards = ([Path(b) for b in args.boards.split(",")] if args.boards
              else sorted(BOARDS.glob("*.json")))
    with tempfile.TemporaryDirectory(prefix="esp32sim-") as tmp:
        total = run(boards, args.sweep, args.seed, Path(tmp))
    return 1 if total["failures"] or total["seq_reused"] or total["queued_lost"] \
        or total["unrecoverable_boots"] else 0


if __name__ == "__main__":
    sys.exit(main())
