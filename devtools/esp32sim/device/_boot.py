"""Boot one simulated chip: micropython _boot.py <run folder>.

What the esp32 port does at reset (ports/esp32/main.c, modules/_boot.py): mount the
flash at "/", run boot.py then main.py from it with sys.path ['', '.frozen', '/lib'].
Before that this file loads the simulated chip (in.json) and imports the simulated
machine/esp32/network/time/socket so the firmware's imports find them. An exception
out of main.py leaves the chip at the REPL, awake, until a watchdog resets it.
"""

import io
import os
import sys

import _sim

_sim.load(sys.argv[1])

import _board  # noqa: E402
import _flash  # noqa: E402
import esp32  # noqa: E402, F401
import machine  # noqa: E402, F401
import network  # noqa: E402, F401
import socket  # noqa: E402, F401
import time  # noqa: E402, F401

_board.setup()
_flash.mount(_sim.state["flash"])
sys.path[:] = ["", ".frozen", "/lib"]


def _run(name):
    try:
        with open(name) as f:
            source = f.read()
    except OSError:
        return
    exec(compile(source, name, "exec"), {"__name__": "__main__", "__file__": name})


def _repl(error):
    """The REPL waits for a serial console nobody uses: only a watchdog ends it."""
    _sim.out["error"] = error
    _sim.log("main.py ended: REPL, awake")
    _sim.advance(24 * 3600 * 1000000)  # a day awake; the task watchdog fires first if armed
    _sim.halt("hung")


_sim.main_cpu_ms = _sim._host_cpu_ms()
try:
    _run("boot.py")
    _run("main.py")
    _repl(None)
except _sim.Halt:
    pass
except Exception as err:  # noqa: BLE001  (what the REPL would print)
    buf = io.StringIO()
    sys.print_exception(err, buf)
    try:
        _repl(buf.getvalue())
    except _sim.Halt:
        pass
