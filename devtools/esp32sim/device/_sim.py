"""The simulated chip's core for one run (power-on or wake until sleep, reset or cut).

A run reads <run>/in.json (written by the CPython harness), keeps a virtual clock in
microseconds of world time, enforces both ESP-IDF watchdogs, accounts time per power
state and, when the run ends, writes <run>/out.json and raises Halt. Nothing after the
end executes anything that matters: every simulated call raises Halt again, as the
silicon would have stopped.
"""

import json
import os

import chips


class Halt(SystemExit):
    """The run ended (deep sleep, reset, watchdog, power cut): stop the program."""


state = {}  # in.json
cfg = {}  # chips.CHIPS[chip]
now_us = 0  # world time (microseconds since the simulation's first power-on)
boot_us = 0  # world time of this boot (ticks_ms() == 0)
dead = False
out = {}  # what the next boot needs: filled by machine/esp32 and halt()
energy = {}  # power state -> microseconds this run
radio = "off"  # off | assoc | dhcp | idle | rx | tx | ap
_radio_plan = []  # [(world_us, state)] scheduled radio transitions (network.py)
_host = None  # VfsPosix over the run folder: in.json/out.json, never the flash
wdt_ms = None  # task watchdog timeout once machine.WDT was created
wdt_fed_us = 0
irq_off_us = None  # world time when machine.disable_irq() was called
cut_at_us = None  # scripted power cut at a world time
main_cpu_ms = None  # host CPU time when main.py started (_boot.py)

# Cost of one interpreted call that touches the hardware (pin, ticks): an estimate
# (MicroPython toggles a pin at roughly 100-200 kHz from Python on a 160-240 MHz core).
CALL_US = 5


def load(run_dir):
    global state, cfg, now_us, boot_us, _host, cut_at_us
    _host = os.VfsPosix(run_dir)
    with _host.open("/in.json", "r") as f:
        state = json.loads(f.read())
    cfg = chips.chip(state["chip"])
    now_us = state["now_us"]
    boot_us = now_us
    cut_at_us = state.get("cut_at_us")
    out["rtc_mem"] = state.get("rtc_mem") or ""
    out["rtc_offset_us"] = state.get("rtc_offset_us", 0)
    out["log"] = []
    # Boot: ROM, bootloader, MicroPython init until main.py (chips.py boot_ms).
    boot_ms = cfg["boot_ms"]
    if state.get("reset_cause") != chips.DEEPSLEEP_RESET:
        boot_ms += cfg["power_on_extra_ms"]
    set_radio("boot")
    advance(boot_ms * 1000)
    set_radio("off")


def log(text):
    out["log"].append("%d %s" % ((now_us - boot_us) // 1000, text))


def set_radio(new):
    global radio
    radio = new


def plan_radio(transitions):
    """Radio states that start at given world times (association, then DHCP, ...)."""
    global _radio_plan
    _radio_plan = sorted(transitions)


def _account(to_us):
    global now_us, radio, _radio_plan
    while _radio_plan and _radio_plan[0][0] <= to_us:
        at, nxt = _radio_plan.pop(0)
        at = max(at, now_us)
        energy[radio] = energy.get(radio, 0) + at - now_us
        now_us = at
        radio = nxt
    energy[radio] = energy.get(radio, 0) + to_us - now_us
    now_us = to_us


def check_alive():
    if dead:
        raise Halt(0)


def advance(us):
    """Let `us` microseconds of world time pass; a watchdog or cut may end the run."""
    check_alive()
    target = now_us + int(us)
    end, why = target, None
    if cut_at_us is not None and cut_at_us <= end:
        end, why = max(cut_at_us, now_us), "power_cut"
    if irq_off_us is not None and irq_off_us + chips.INT_WDT_MS * 1000 <= end:
        # ESP-IDF interrupt watchdog (esp_int_wdt.c): the tick interrupt cannot feed it
        # while interrupts are off; panic "Interrupt wdt timeout on CPU0", then reset.
        end, why = irq_off_us + chips.INT_WDT_MS * 1000, "int_wdt"
    if wdt_ms is not None and wdt_fed_us + wdt_ms * 1000 <= end:
        # ESP-IDF task watchdog (esp_task_wdt.c, trigger_panic from machine_wdt.c).
        end, why = wdt_fed_us + wdt_ms * 1000, "task_wdt"
    _account(max(end, now_us))
    if why:
        halt(why)


def call():
    advance(CALL_US)


def ticks_us():
    return now_us - boot_us


def halt(end, **info):
    """End the run: record how, write out.json, stop the program."""
    global dead
    if dead:
        raise Halt(0)
    out["end"] = end
    out["now_us"] = now_us
    out["boot_us"] = boot_us
    out["energy"] = energy
    out.update(info)
    # Python work the virtual clock does not charge: host CPU from main.py's start to
    # here (an ESP32 needs roughly 50-100x as long, machine-facts.md)
    now_cpu = _host_cpu_ms()
    if now_cpu is not None and main_cpu_ms is not None:
        out["host_cpu_ms"] = round(now_cpu - main_cpu_ms, 2)
    for hook in _end_hooks:
        hook(out)
    dead = True
    with _host.open("/out.json", "w") as f:
        f.write(json.dumps(out))
    raise Halt(0)


_end_hooks = []


def on_end(hook):
    """hook(out) runs when the run ends (pins report what they hold, flash its writes)."""
    _end_hooks.append(hook)


def _host_cpu_ms():
    """CPU time this process has used on the host (Linux /proc/self/schedstat, ns)."""
    try:
        with os.VfsPosix().open("/proc/self/schedstat", "r") as f:
            return int(f.read().split()[0]) / 1000000
    except (OSError, ValueError, IndexError):
        return None
