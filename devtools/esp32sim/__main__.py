"""make firmware-sim: every board profile through a device's life on its simulated
chip against the real backend; one JSON line per board, then a summary line.

    python -m devtools.esp32sim [--sweep N] [--boards a.json,b.json] [--seed S] [--record]

--record writes each board's measured figures to hardware/measured/<board>.json, which
`replenish provision power-budget` (hardware/power.py) uses instead of its estimates.
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


MEASURED = Path(__file__).resolve().parents[2] / "hardware" / "measured"
RECORDED = ("chip", "awake_ms_per_press", "answer_ms_per_press", "mas_per_press", "sleep_ua",
            "periodic_mas_per_day", "host_cpu_ms_per_press")


def record(line: dict, folder: Path = MEASURED) -> Path:
    """A board's figures from one simulated life, for hardware/power.py."""
    import subprocess
    from datetime import date

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=folder.parents[1]).stdout.strip()
    figures = {k: line[k] for k in RECORDED}
    figures["source"] = (f"make firmware-sim on {date.today().isoformat()}, firmware at "
                         f"{commit or 'an unknown commit'}: simulated chip, datasheet "
                         "currents (docs/firmware.md)")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{line['board']}.json"
    path.write_text(json.dumps(figures, indent=1) + "\n")
    return path


def run(boards: list[Path], sweep: int, seed: int, work: Path,
        record_to: Path | None = None) -> dict:
    lines = []
    with Backend_(work / "backend") as backend:
        for i, board in enumerate(boards):
            rng = random.Random(seed * 1000 + i)
            life = live(board, backend, work / board.stem, rng, sweep_wakes=sweep)
            device_id = json.loads((life.device.flash / "bundle" / "identity.json").read_text()
                                   )["device_id"]
            line = summary(life, backend, device_id)
            lines.append(line)
            if record_to is not None and not line["failure_count"]:
                record(line, record_to)
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
    parser.add_argument("--record", action="store_true",
                        help="write hardware/measured/<board>.json for power-budget")
    args = parser.parse_args(argv)
    boards = ([Path(b) for b in args.boards.split(",")] if args.boards
              else sorted(BOARDS.glob("*.json")))
    with tempfile.TemporaryDirectory(prefix="esp32sim-") as tmp:
        total = run(boards, args.sweep, args.seed, Path(tmp),
                    MEASURED if args.record else None)
    return 1 if total["failures"] or total["seq_reused"] or total["queued_lost"] \
        or total["unrecoverable_boots"] else 0


if __name__ == "__main__":
    sys.exit(main())
