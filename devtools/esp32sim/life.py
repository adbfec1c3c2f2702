"""A device's life on its simulated board, against the real backend (issue 15 point 3).

Per board profile: first boot without Wi-Fi -> setup access point (the phone posts the
label's secret and the home network) -> reset -> boot event -> press -> order -> deep
sleep -> button wake; a press while the backend is unreachable (queued, delivered when
it returns); for a load cell, timer wakes on a falling weight until it reorders; then a
sweep of wakes with power cuts at random flash writes and random moments, and a quiet
spell that lets the queue drain. Measured: what the wire carried (sequence numbers),
what the backend stored, the time in each power state (energy).
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import cbor2
from aiocoap import Message

from devtools.esp32sim import energy
from devtools.esp32sim.device import chips
from devtools.esp32sim.harness import US, Device, Run, Script
from devtools.esp32sim.world import Backend_, build_flash

KIND_PRESS = 1
KIND_LEVEL = 2
HOUR = 3600


def wire_events(run: Run) -> list[tuple[int, int, bytes]]:
    """(seq, kind, COSE payload) of every event datagram the run sent."""
    found = []
    for raw in run.out.get("sent", ()):
        try:
            msg = Message.decode(bytes.fromhex(raw))
            cose = cbor2.loads(msg.payload) if msg.payload else None
            body = cose.value if isinstance(cose, cbor2.CBORTag) else cose
            fields = cbor2.loads(body[2])
            found.append((fields[1], fields[2], body[2]))
        except Exception:  # noqa: BLE001  (an ACK, an OTA block: not an event)
            continue
    return found


@dataclass
class Life:
    board: str
    chip: str
    device: Device
    failures: list[str] = field(default_factory=list)
    press_runs: list[Run] = field(default_factory=list)  # steady returning presses
    taken_presses: int = 0  # press wakes that ran to deep sleep (the press is theirs)
    queued_delay_s: int | None = None
    sensor_ordered: bool | None = None

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.failures.append(what)


def _run(life: Life, runs_done: list[Run], **kwargs) -> Run:
    run = life.device.boot(**kwargs)
    runs_done.append(run)
    if run.wake_reason in (chips.WAKE_EXT0, chips.WAKE_EXT1, chips.WAKE_GPIO) \
            and run.end == "deepsleep":
        life.taken_presses += 1
    return run


def live(board_path: Path, backend: Backend_, work: Path, rng: random.Random,
         sweep_wakes: int = 40, firmware_dir: Path | None = None) -> Life:
    dev, profile = backend.provision(board_path, work / "provision")
    kwargs = {} if firmware_dir is None else {"firmware_dir": firmware_dir}
    flash = build_flash(dev.bundle_dir / "identity.json", board_path, work / "flash", **kwargs)
    script = Script()
    if "hx711" in profile:  # the factory's calibration (tare, known weight), in flash
        (flash / "bundle" / "state").mkdir(parents=True, exist_ok=True)
        offset, per_unit = script.hx711_cal
        (flash / "bundle" / "state" / "cal").write_text("%d %r" % (offset, per_unit))
    used = [0.0]  # mA*s drawn from the cell so far
    cap = energy.capacity_mas(profile)
    device = Device(profile["mcu"], profile, flash, work / "runs", script,
                    battery_mv=lambda d: energy.ocv_mv(1 - used[0] / cap))
    life = Life(profile["board"], profile["mcu"], device)
    runs: list[Run] = []
    sensor = profile.get("sensor")

    def boot(**kw) -> Run:
        run = _run(life, runs, **kw)
        used[0] += energy.run_mas(life.chip, run.out)
        return run

    # 1. first boot: no Wi-Fi credentials -> setup access point, the phone posts them
    device.phone_creds = ("home", "hunter22", dev.setup_secret)
    first = boot()
    device.phone_creds = None
    life.check(first.end == "reset" and device.read_flash("bundle/state/wifi.json") is not None,
               f"setup mode: ended {first.end}, credentials "
               f"{'saved' if device.read_flash('bundle/state/wifi.json') else 'missing'}")
    # 2. the reset into normal mode: a boot event
    boot()
    t = device.world_us / US
    if sensor:
        # 3s. timer wakes on a falling weight until the scale reorders
        grams = sensor.get("capacity", 5000)
        step = sensor.get("wake_interval_s", 600)
        for i in range(40):
            script.grams.append((int((t + i * step) * US), grams - i * grams / 30))
        for run in device.run_until(t + 40 * step, max_runs=60):
            runs.append(run)
            used[0] += energy.run_mas(life.chip, run.out)
        levels = [e[2] for e in backend.events(dev.device_id) if e[1] == KIND_LEVEL]
        life.check(len(levels) >= 25 and levels[-1] is not None and levels[-1] < grams / 10,
                   f"level reports that reached the backend: {levels}")
        # Below the slot's floor (world.py) the backend orders: the scale reorders.
        life.sensor_ordered = any(o[2] == "sensor" for o in backend.orders(dev.device_id))
        life.check(life.sensor_ordered, "the scale's level fell below its floor and "
                                        "no sensor order was made")
    else:
        # 3b. press -> order; a second press -> already ordered
        script.press(t + 30)
        script.press(t + 90)
        boot()
        boot()
        orders = backend.orders(dev.device_id)
        life.check(len(orders) == 1, f"two presses gave {len(orders)} orders")
    # 4. returning presses, one an hour for two days (steady state: cached join)
    t = device.world_us / US
    for h in range(1, 49, 4):
        script.press(t + h * HOUR)
    before = len(device.runs)
    device.run_until(t + 48 * HOUR, max_runs=80)
    steady = device.runs[before:]
    runs.extend(steady)
    for run in steady:
        used[0] += energy.run_mas(life.chip, run.out)
        if run.wake_reason in (chips.WAKE_EXT0, chips.WAKE_EXT1, chips.WAKE_GPIO):
            if run.end == "deepsleep":
                life.taken_presses += 1
                life.press_runs.append(run)
    # 5. backend unreachable for two hours with a press inside: queued, then delivered
    t = device.world_us / US
    script.faults.append((int((t + 60) * US), int((t + 2 * HOUR) * US), "backend_unreachable"))
    script.press(t + 600)
    delivered_before = sum(1 for e in backend.events(dev.device_id) if e[1] == KIND_PRESS)
    back_at = t + 2 * HOUR
    for _ in range(40):  # until delivered, at most two days
        if device.world_us / US > t + 48 * HOUR or device.asleep_forever:
            break
        run = boot()
        delivered = sum(1 for e in backend.events(dev.device_id) if e[1] == KIND_PRESS)
        if sensor or delivered > delivered_before:
            life.queued_delay_s = max(0, round(device.runs[-1].start_us / US - back_at))
            break
    if not sensor:
        life.check(delivered == delivered_before + 1,
                   f"press while the backend was unreachable: {delivered - delivered_before} "
                   "delivered within two days")
    # 6. power cuts at random flash writes and random moments
    t = device.world_us / US
    for i in range(sweep_wakes):
        script.press(t + (i + 1) * 600 + rng.uniform(0, 300))
    last_ops = 8
    for _ in range(sweep_wakes * 2):
        if device.world_us / US > t + (sweep_wakes + 1) * 600 or device.asleep_forever:
            break
        cut = {}
        if rng.random() < 0.5:
            if rng.random() < 0.6:
                cut = {"cut_at_op": rng.randint(1, max(1, last_ops)),
                       "tear_frac": rng.random()}
            else:
                cut = {"cut_at_us": device.world_us + rng.randint(0, 3 * US)}
        run = _run(life, runs, **cut)
        used[0] += energy.run_mas(life.chip, run.out)
        last_ops = max(2, run.out.get("flash_ops", last_ops))
    # 7. a quiet day: the queue drains on timer wakes
    t = device.world_us / US
    for run in device.run_until(t + 24 * HOUR, max_runs=40):
        runs.append(run)
        used[0] += energy.run_mas(life.chip, run.out)
    life.device.used_mas = used[0]
    return life


def summary(life: Life, backend: Backend_, device_id: str) -> dict:
    device = life.device
    runs = device.runs
    seen: dict[int, bytes] = {}
    reused = set()
    cut_owned = set()  # press events first sent by a wake that then lost power
    for run in runs:
        for seq, kind, payload in wire_events(run):
            if seq in seen and seen[seq] != payload:
                reused.add(seq)
            if seq not in seen and kind == KIND_PRESS and run.end == "power_cut":
                cut_owned.add(seq)
            seen.setdefault(seq, payload)
    delivered = {e[0] for e in backend.events(device_id) if e[1] == KIND_PRESS}
    # every press wake that ran to deep sleep owns one press event; a wake cut short
    # owns none, though it may have sent one before the cut
    lost = max(0, life.taken_presses - len(delivered - cut_owned))
    loops, unrecoverable = 0, 0
    for run in runs:
        loops = loops + 1 if run.end in ("task_wdt", "int_wdt", "reset", "panic") else 0
        if loops == 3 or run.end in ("hung", "crashed"):
            unrecoverable += 1
    if device.asleep_forever:
        unrecoverable += 1
    for run in runs:  # an exception, even one main.py caught and slept on, is a fault
        if run.end in ("task_wdt", "int_wdt", "hung", "crashed", "panic"):
            life.failures.append(f"run {run.index}: ended {run.end}")
        if run.traceback and run.end != "power_cut":
            life.failures.append(f"run {run.index}: {run.traceback.splitlines()[-1]}")
        if run.out.get("hx711_violations"):
            life.failures.append(f"run {run.index}: HX711 timing violated "
                                 f"{run.out['hx711_violations']} times")
    awake = [r.awake_us / 1000 for r in life.press_runs]
    press_mas = statistics.mean(energy.run_mas(life.chip, r.out) for r in life.press_runs) \
        if life.press_runs else 0.0
    last_sleep = device.sleeps[-1] if device.sleeps else {"hx711_powered": False}
    sleep_ua = energy.sleep_ua(life.chip, device.board, last_sleep.get("hx711_powered", False))
    # Timer wakes (heartbeat, sensor): their mean charge times how often the firmware
    # arms the timer when nothing is pressed (the median armed timer of quiet wakes).
    quiet = [r for r in runs if r.wake_reason == chips.WAKE_TIMER and r.end == "deepsleep"
             and r.out.get("timer_ms") and not r.out.get("sent", [])[1:]]
    periodic = 0.0
    if quiet:
        interval_s = statistics.median(r.out["timer_ms"] for r in quiet) / 1000
        periodic = statistics.mean(energy.run_mas(life.chip, r.out) for r in quiet) \
            * 86400 / interval_s
    cap = energy.capacity_mas(device.board)
    days = {n: energy.life_days(device.board, life.chip, press_mas, n, periodic, sleep_ua)
            for n in (1, 10, 100)}
    return {
        "board": life.board, "chip": life.chip, "wakes": len(runs),
        "power_cuts": sum(1 for r in runs if r.end == "power_cut"),
        "seq_reused": len(reused), "queued_lost": lost, "unrecoverable_boots": unrecoverable,
        "failures": life.failures[:20], "failure_count": len(life.failures),
        "ends": {end: sum(1 for r in runs if r.end == end) for end in {r.end for r in runs}},
        "queued_delivery_delay_s": life.queued_delay_s,
        "sensor_ordered": life.sensor_ordered,
        "awake_ms_per_press": round(statistics.median(awake)) if awake else None,
        "awake_ms_per_press_max": round(max(awake)) if awake else None,
        "answer_ms_per_press": statistics.median(
            r.out.get("answer_ms") or 0 for r in life.press_runs) if life.press_runs else None,
        # Python work the virtual clock does not charge, on this host (ESP32: ~50-100x)
        "host_cpu_ms_per_press": statistics.median(
            r.out.get("host_cpu_ms") or 0 for r in life.press_runs) if life.press_runs else None,
        "mas_per_press": round(press_mas, 2),
        "sleep_ua": round(sleep_ua, 1),
        "periodic_mas_per_day": round(periodic, 1),
        "mah_per_day": {str(n): round((sleep_ua / 1000 * 86400 + n * press_mas + periodic)
                                      / 3600, 3) for n in (1, 10, 100)},
        "life_days": {str(n): round(d) for n, d in days.items()},
        "presses_per_cell": int(cap / press_mas) if press_mas else None,
    }
