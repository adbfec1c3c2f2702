"""Run a flash image's main.py on a simulated ESP32, wake after wake (CPython side).

Each run is one `micropython devtools/esp32sim/device/_boot.py <run>` process: the
harness writes in.json (chip, reset cause, wake reason, RTC memory, world time,
scripted inputs), the device writes out.json when it deep-sleeps, resets, trips a
watchdog, loses power or hangs. Between runs the harness plays the hardware that
outlives the CPU: the RTC (memory and time survive deep sleep and resets, not a power
loss), the armed wake sources (which of them fires first, and the wake reason the
chip reports for it), and the world's clock through deep sleep.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from devtools.esp32sim.device import chips
from devtools.net import free_tcp_port_below_ephemeral

DEVICE_DIR = Path(__file__).resolve().parent / "device"
RUN_TIMEOUT_S = 120  # real seconds for one run: a firmware busy loop ends here
US = 1_000_000


def micropython_binary() -> Path:
    path = Path(sys.executable).parent / "micropython"
    if not path.exists():
        raise FileNotFoundError(f"micropython not found next to {sys.executable}")
    return path


@dataclass
class Script:
    """The world around the board: presses, weights, Wi-Fi and backend faults."""

    presses: list[tuple[int, int]] = field(default_factory=list)  # (world us, held ms)
    grams: list[tuple[int, float]] = field(default_factory=list)  # (world us, grams)
    hx711_cal: tuple[int, float] = (84000, 420.0)  # raw = offset + grams * per_unit
    wifi: dict = field(default_factory=lambda: {
        "ssid": "home", "password": "hunter22", "channel": 6, "bssid": "a0b1c2d3e4f5",
        "rssi": -58})
    faults: list[tuple[int, int, str]] = field(default_factory=list)  # (from, to, fault)

    def wifi_at(self, world_us: int) -> dict:
        wifi = dict(self.wifi)
        for start, end, fault in self.faults:
            if start <= world_us < end:
                wifi["fault"] = fault
        return wifi

    def press(self, at_s: float, held_ms: int = 150) -> None:
        self.presses.append((int(at_s * US), held_ms))
        self.presses.sort()


@dataclass
class Run:
    """What one run did (out.json plus the harness's view)."""

    index: int
    start_us: int
    reset_cause: int
    wake_reason: int
    out: dict
    stdout: str
    stderr: str

    @property
    def end(self) -> str:
        return self.out.get("end", "crashed")

    @property
    def traceback(self) -> str | None:
        """An exception the firmware printed, caught or not (main.py's crash handler
        prints it and sleeps, which must not pass for a good wake)."""
        text = self.out.get("error") or ""
        if "Traceback (most recent call last)" in self.stdout:
            text = self.stdout[self.stdout.index("Traceback (most recent call last)"):]
        return text.strip() or None

    @property
    def awake_us(self) -> int:
        return self.out.get("now_us", self.start_us) - self.start_us


class Phone:
    """The household's phone in setup mode: joins the AP, posts the Wi-Fi form once."""

    def __init__(self, port: int, ssid: str, password: str, code: str):
        self.port, self.ssid, self.password, self.code = port, ssid, password, code
        self.answer: bytes | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        body = urllib.parse.urlencode({"ssid": self.ssid, "password": self.password,
                                       "code": self.code}).encode()
        request = (b"POST / HTTP/1.1\r\nHost: 192.168.4.1\r\n"
                   b"Content-Type: application/x-www-form-urlencoded\r\n"
                   b"Content-Length: %d\r\n\r\n" % len(body)) + body
        for _ in range(600):  # bounded: about 60 s of real time
            if self._stop.is_set():
                return
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as conn:
                    conn.sendall(request)
                    chunks = []
                    while chunk := conn.recv(4096):
                        chunks.append(chunk)
                    self.answer = b"".join(chunks)
                    return
            except OSError:
                time.sleep(0.1)


def free_port() -> int:
    """The setup access point's port: the firmware binds it, not us (devtools/net.py)."""
    return free_tcp_port_below_ephemeral()


class Device:
    """One simulated board: a chip, its flash folder, the RTC domain, the world clock."""

    def __init__(self, chip: str, board: dict, flash: Path, work: Path,
                 script: Script | None = None, flash_model: str = "torn",
                 battery_mv=lambda device: 3900, idf: tuple = chips.IDF_DEFAULT):
        chips.chip(chip)
        self.chip, self.board, self.flash, self.work = chip, board, Path(flash), Path(work)
        self.script = script or Script()
        self.flash_model = flash_model
        self.idf = idf  # the ESP-IDF release the simulated port was built with
        self.battery_mv = battery_mv
        self.world_us = 0
        self.rtc_mem = ""
        self.rtc_zero_us = 0  # world time the RTC last restarted (power-on)
        self.rtc_offset_us = 0
        self.reset_cause = chips.PWRON_RESET
        self.wake_reason = chips.WAKE_UNDEFINED
        self.wake_pins: list[int] = []
        self.runs: list[Run] = []
        self.sleeps: list[dict] = []  # {"us", "hx711_powered", "held"} per deep sleep
        self.asleep_forever = False
        self.phone: Phone | None = None
        self.phone_creds: tuple[str, str, str] | None = None  # (ssid, password, code)
        self.work.mkdir(parents=True, exist_ok=True)

    # --- one run -------------------------------------------------------------------
    def boot(self, cut_at_op: int | None = None, cut_at_us: int | None = None,
             tear_frac: float = 0.5) -> Run:
        index = len(self.runs)
        run_dir = self.work / f"run-{index:05d}"
        run_dir.mkdir(parents=True, exist_ok=True)
        ap_port = free_port()
        state = {
            "chip": self.chip, "idf": list(self.idf), "board": self.board, "flash": str(self.flash.resolve()),
            "now_us": self.world_us, "reset_cause": self.reset_cause,
            "wake_reason": self.wake_reason, "wake_pins": self.wake_pins,
            "rtc_mem": self.rtc_mem, "rtc_zero_us": self.rtc_zero_us,
            "rtc_offset_us": self.rtc_offset_us,
            "script": {"presses": self.script.presses, "grams": self.script.grams,
                       "hx711_cal": list(self.script.hx711_cal)},
            "wifi": self.script.wifi_at(self.world_us), "ap_ports": {"80": ap_port},
            "phone": bool(self.phone_creds),  # a phone joins the setup AP this run
            "battery_mv": int(self.battery_mv(self)), "flash_model": self.flash_model,
            "held": self.sleeps[-1]["held"] if self.sleeps and
            self.reset_cause == chips.DEEPSLEEP_RESET else {},
            "cut_at_op": cut_at_op, "cut_at_us": cut_at_us, "tear_frac": tear_frac,
        }
        (run_dir / "in.json").write_text(json.dumps(state))
        out_path = run_dir / "out.json"
        out_path.unlink(missing_ok=True)
        phone = None
        if self.phone_creds:
            phone = Phone(ap_port, *self.phone_creds)
            phone.start()
        env = {**os.environ, "MICROPYPATH": str(DEVICE_DIR)}
        try:
            done = subprocess.run([str(micropython_binary()), str(DEVICE_DIR / "_boot.py"),
                                   str(run_dir)], capture_output=True, text=True, env=env,
                                  timeout=RUN_TIMEOUT_S)
            stdout, stderr = done.stdout, done.stderr
        except subprocess.TimeoutExpired as err:
            stdout, stderr = str(err.stdout or ""), "real-time limit: the run never yielded"
        finally:
            if phone:
                phone.stop()
        out = json.loads(out_path.read_text()) if out_path.exists() else {
            "end": "crashed", "error": stderr[-2000:]}
        run = Run(index, self.world_us, self.reset_cause, self.wake_reason, out, stdout, stderr)
        self.runs.append(run)
        self._after(run)
        return run

    # --- what outlives the run ----------------------------------------------------
    def _after(self, run: Run) -> None:
        out = run.out
        now = out.get("now_us", self.world_us)
        end = run.end
        self.rtc_mem = out.get("rtc_mem", self.rtc_mem)
        self.rtc_offset_us = out.get("rtc_offset_us", self.rtc_offset_us)
        self.wake_pins = []
        if end == "deepsleep":
            self._deep_sleep(now, out)
            return
        self.world_us = now + 1000  # a reset takes about a millisecond
        self.wake_reason = chips.WAKE_UNDEFINED
        if end in ("reset", "bootloader", "panic"):
            self.reset_cause = chips.HARD_RESET
        elif end == "soft_reset":
            self.reset_cause = chips.SOFT_RESET
        elif end in ("task_wdt", "int_wdt"):
            self.reset_cause = chips.WDT_RESET
        else:  # power_cut, hung, crashed: power is lost (a cut) or someone pulls the cell
            self.power_loss(now)

    def power_loss(self, now_us: int | None = None, off_s: float = 1.0) -> None:
        """Power returns after off_s: RTC memory and time are gone (RTC_NOINIT survives
        resets, not a power loss)."""
        now_us = self.world_us if now_us is None else now_us
        self.world_us = now_us + int(off_s * US)
        self.rtc_mem = ""
        self.rtc_zero_us = self.world_us
        self.rtc_offset_us = 0
        self.reset_cause = chips.PWRON_RESET
        self.wake_reason = chips.WAKE_UNDEFINED
        self.asleep_forever = False

    def _button_level_at(self, t: int) -> int:
        button = self.board.get("button") or {}
        active = 0 if button.get("active_low", True) else 1
        pressed = any(start <= t < start + held * 1000 for start, held in self.script.presses)
        return active if pressed else 1 - active

    def _deep_sleep(self, now: int, out: dict) -> None:
        """Which armed source wakes the chip first, and what wake_reason() then says."""
        wake = out.get("wake") or {}
        candidates = []
        if out.get("timer_ms") is not None:
            candidates.append((now + int(out["timer_ms"]) * 1000, chips.WAKE_TIMER, []))
        button = (self.board.get("button") or {}).get("pin")
        sources = []
        if wake.get("ext0"):
            sources.append(("ext0", [wake["ext0"][0]], wake["ext0"][1], chips.WAKE_EXT0))
        if wake.get("ext1"):
            sources.append(("ext1", wake["ext1"][0], wake["ext1"][1], chips.WAKE_EXT1))
        if wake.get("gpio"):
            sources.append(("gpio", wake["gpio"][0], wake["gpio"][1], chips.WAKE_GPIO))
        for _name, pins, level, reason in sources:
            if button in pins:
                # level-triggered: awake at once if the pin is already at the level
                moments = [now] if self._button_level_at(now) == level else []
                moments += [s for s, _ in self.script.presses if s > now
                            and self._button_level_at(s) == level]
                if moments:
                    candidates.append((min(moments), reason, [button]))
        hx = self.board.get("hx711")
        held = out.get("held") or {}
        self.sleeps.append({"from_us": now, "held": held,
                            "hx711_powered": bool(hx) and held.get(str(hx["sck_pin"])) != 1})
        if not candidates:
            self.asleep_forever = True
            self.sleeps[-1]["to_us"] = None
            return
        at, reason, pins = min(candidates)
        self.sleeps[-1]["to_us"] = at
        self.world_us = at
        self.reset_cause = chips.DEEPSLEEP_RESET
        self.wake_reason = reason
        self.wake_pins = pins if reason in (chips.WAKE_EXT1, chips.WAKE_GPIO) else []

    # --- helpers ----------------------------------------------------------------
    def run_until(self, world_s: float, max_runs: int = 200, **boot_kwargs) -> list[Run]:
        """Boot wake after wake until the world clock passes world_s (bounded)."""
        done = []
        while self.world_us < world_s * US and len(done) < max_runs and not self.asleep_forever:
            done.append(self.boot(**boot_kwargs))
            if done[-1].end == "hung":
                break
        return done

    def read_flash(self, rel: str) -> bytes | None:
        path = self.flash / rel
        return path.read_bytes() if path.exists() else None


def snippet_device(chip: str, source: str, work: Path, board: dict | None = None,
                   script: Script | None = None, **kwargs) -> Device:
    """A device whose flash holds only `source` as main.py (tests of the chip itself)."""
    flash = Path(work) / "flash"
    flash.mkdir(parents=True, exist_ok=True)
    (flash / "main.py").write_text(source)
    return Device(chip, board or {}, flash, Path(work) / "runs", script, **kwargs)
