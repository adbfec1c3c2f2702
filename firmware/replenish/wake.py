"""The one wake routine: everything a device does, written once for every hardware layer.

    wake reason -> action -> (press: into the flash queue first) -> connect -> send the
    queue, then the event -> verified answer -> LED -> heartbeat / update offer ->
    what to arm for the next sleep

Device(hw, bundle, ota_root).wake() is one whole ESP32 wake (firmware/main.py calls it
and then hw.sleep()); the unix port (firmware/main_unix.py) drives the same parts one
stdin command at a time: press(), boot(), flush(), measure(), heartbeat(), setup().
`hw` is a replenish.hal.Hardware. Nothing here imports machine, network or esp32.
"""

import json
import time

from micropython import const

import otaboot
from replenish import identity as identity_mod
from replenish import power
from replenish import sensor as sensor_mod
from replenish.backoff import Failures
from replenish.button import Button
from replenish.counter import SeqCounter
from replenish.queue import Queue
from replenish.sender import Sender
from replenish.status import DEFAULT_INTERVAL_S, Status

# Records in RTC memory (hw.rtc(index)); each at most 30 bytes.
RTC_QUEUE = const(0)
RTC_SENSOR = const(1)
RTC_FAILURES = const(2)
RTC_STATUS = const(3)
RTC_WIFI = const(4)  # the last access point and IP configuration (hw/esp32.py)
RTC_COUNTER = const(5)  # the next sequence number inside the reserved block

SETUP_TIMEOUT_MS = const(600000)
SETUP_PORT = const(80)
SETUP_REFUSED = "refused"
_DEFAULT_WAKE_INTERVAL_S = const(3600)
# HX711 conversions per timer wake: at 10 samples/s each costs 100 ms awake, and the
# median of three still ignores one knock or spike (tare and calibration take nine)
_LEVEL_SAMPLES = const(3)


def _now_s():
    return int(time.time())  # an int on the ESP32, a float on the unix port


class _Offline:
    """The client while no network is up: every request fails at once."""

    def request(self, code, path, payload=b"", content_format=None):
        raise OSError("no network")


class Device:
    def __init__(self, hw, bundle, ota_root, log=None, setup_timeout_ms=SETUP_TIMEOUT_MS):
        self.hw = hw
        self.bundle = bundle
        self.ota_root = ota_root
        self._log = log
        self._setup_timeout_ms = setup_timeout_ms
        ident = identity_mod.load(bundle)
        ident.fw = otaboot.running(ota_root, ident.fw)[0]  # an installed update's version
        self.ident = ident
        self.board = board = ident.board or {}
        self.storage = hw.storage
        self.status = Status(hw.rtc(RTC_STATUS),
                             board.get("status_interval_s", DEFAULT_INTERVAL_S))
        self.failures = Failures(hw.rtc(RTC_FAILURES))
        self.queue = Queue(hw.storage, rtc=hw.rtc(RTC_QUEUE))
        self.sender = Sender(ident, SeqCounter(hw.storage, rtc=hw.rtc(RTC_COUNTER)),
                             _Offline(), self.queue,
                             hw.battery, hw.led)
        self.sender.quiet_until = self.failures.quiet_until
        self.button = Button(self.sender, hw.led, connect=self.online)
        self.client = None  # the CoAP client once the network is up
        self._tried = False
        self.cfg = board.get("sensor")
        self.sensor = None
        if self.cfg is not None:
            cfg = self.cfg
            policy = sensor_mod.Policy(cfg["capacity"], cfg.get("hysteresis", 0),
                                       cfg.get("heartbeat_s", 86400))
            self.sensor = sensor_mod.Sensor(self.sender, hw.led, policy,
                                            sensor_mod.State(hw.rtc(RTC_SENSOR)))
        self._cell = None

    def note(self, text):
        if self._log is not None:
            self._log(text)

    # --- the network, brought up only when something must be sent ---

    def wifi(self):
        raw = self.storage.read("wifi.json")
        try:
            wifi = json.loads(raw) if raw else None
        except ValueError:
            wifi = None
        return wifi if isinstance(wifi, dict) and wifi.get("ssid") else None

    def online(self):
        """The CoAP client, joining the network on first use; None when unreachable."""
        if not self._tried:
            self._tried = True
            self.hw.feed()
            self.client = self.hw.connect(self.wifi(), self.ident.coap_host,
                                          self.ident.coap_port)
            if self.client is not None:
                self.sender.client = self.client
        return self.client

    # --- the parts of a wake ---

    def press(self, slot=0, qty=None):
        self.status.wake()
        return self.button.press(slot, qty)

    def boot(self):
        return self.button.boot()

    def flush(self):
        self.online()
        return self.sender.flush()

    def _role(self):
        role = self.sensor
        if role is None:
            raise ValueError("not a sensor board (board.json has no sensor)")
        return role

    def _load_cell(self):
        """The HX711 (calibration applied), made once, powered up for each use and
        down after it: powered, it draws ~1.5 mA (datasheet), and hw.sleep() holds
        the power-down level through deep sleep."""
        adc = self._cell
        if adc is None:
            adc = self.hw.load_cell(self.board["hx711"])
            cal = self.storage.read("cal")
            if cal:
                offset, per_unit = cal.decode().split()
                adc.offset, adc.counts_per_unit = int(offset), float(per_unit)
            self._cell = adc
        adc.power_up()
        return adc

    def tare(self):
        adc = self._load_cell()
        try:
            adc.tare()
        finally:
            adc.power_down()
        self._save_calibration(adc)

    def calibrate(self, known_amount):
        adc = self._load_cell()
        try:
            adc.calibrate(known_amount)
        finally:
            adc.power_down()
        self._save_calibration(adc)

    def _save_calibration(self, adc):
        self.storage.write("cal", ("%d %r" % (adc.offset, adc.counts_per_unit)).encode())

    def amount(self):
        cfg = self.cfg or {}
        if cfg.get("kind") == "cycle_counter":
            return sensor_mod.cycles_remaining(cfg["capacity"], cfg.get("dose", 1),
                                               self._role().state.cycles)
        adc = self._load_cell()
        try:
            return adc.amount(_LEVEL_SAMPLES)
        finally:
            adc.power_down()

    def count(self, cycles=1):
        """Appliance cycles seen on the pulse line (a refill zeroes them)."""
        state = self._role().state
        state.cycles = state.cycles + cycles if cycles else 0
        state.save()

    def measure(self, now_s):
        """(remaining, reason or None, Outcome or None): report when the policy says so;
        the radio stays off otherwise."""
        role = self._role()
        amount = self.amount()
        remaining = role.policy.clamp(amount)
        st = role.state
        if role.policy.decide(remaining, now_s, st.last, st.last_s) is None:
            return remaining, None, None
        self.online()
        reason, outcome = role.wake(amount, now_s)
        return remaining, reason, outcome

    def heartbeat(self, now_s, may_update=True, log=None):
        """A status heartbeat carrying any update report; an offered update is fetched,
        verified and installed. (Outcome, (result, detail, updater) or None)."""
        self.online()
        root = self.ota_root
        report = otaboot.pending_report(root)
        outcome = self.status.send(self.sender, now_s, self.hw.rssi(), report)
        if not outcome.authenticated:
            return outcome, None
        if report is not None:
            otaboot.checked_in(root)
        if outcome.update is None or not may_update:
            return outcome, None
        from replenish import ota

        self.hw.feed()
        updater = ota.Updater(root, self.client, self.ident, self.hw.battery, log=log,
                              tick=self.hw.feed)
        result, detail = updater.run(outcome.update)
        return outcome, (result, detail, updater)

    def setup(self, port=SETUP_PORT):
        """Wi-Fi setup mode on the device's own access point: (result, ssid)."""
        from replenish import setup

        ident = self.ident
        led = self.hw.led
        if not ident.setup_secret:
            led.show("error")  # an old bundle without a label secret: never open
            return SETUP_REFUSED, None
        listener = self.hw.setup_listener("Replenish-" + ident.device_hex[-4:],
                                          ident.setup_secret, port)
        storage = self.storage

        def save(ssid, password):
            storage.write("wifi.json", json.dumps({"ssid": ssid, "password": password})
                          .encode())

        led.show("setup")
        try:
            server = setup.SetupServer(listener, self.hw.clock, ident.setup_secret, save,
                                       self._setup_timeout_ms, log=self._log,
                                       tick=self.hw.feed)
            result, ssid = server.serve()
        finally:
            listener.close()
            self.hw.setup_done()
        led.off()
        return result, ssid

    # --- one whole wake (the ESP32 entry point) ---

    def wake(self):
        """Do what this wake is for; the timer for the next deep sleep (None: pins only)."""
        hw = self.hw
        board = self.board
        cfg = self.cfg
        reason = hw.wake_reason()
        self.status.wake()
        wifi = self.wifi()
        held_ms = hw.held_ms(power.LONG_PRESS_MS) if reason == power.WAKE_BUTTON else 0
        todo = power.action(reason, wifi is not None, held_ms, cfg is not None,
                            len(self.queue))
        outcome = None
        if todo == power.ACTION_SETUP:
            result, _ssid = self.setup()
            if result == "saved":
                hw.reset()  # into normal mode with the new credentials
            todo = None
        if todo == power.ACTION_PRESS and cfg is not None \
                and cfg.get("kind") == "cycle_counter":
            self.count(0)  # a press on a cycle counter means "refilled"
            todo = power.ACTION_MEASURE
        elif todo == power.ACTION_COUNT:
            self.count()  # one debounced pulse woke us: one appliance cycle
            todo = power.ACTION_MEASURE
        if todo == power.ACTION_PRESS:
            outcome = self.button.press(0)
        elif todo == power.ACTION_MEASURE and cfg is not None:
            outcome = self.measure(_now_s())[2]
        elif todo == power.ACTION_BOOT:
            outcome = self.boot()
        elif todo == power.ACTION_RETRY:
            outcome = self.flush()[1]
        # a queued event, or a retry that delivered nothing, counts as a failed wake: the
        # next timer backs off from it (a retry once reset the count and waited a day)
        failed = outcome is not None and not outcome.authenticated
        # no heartbeat after a failure: it would wait out another full retransmission
        if not failed and wifi is not None and (
                otaboot.pending_report(self.ota_root) is not None
                or self.status.due(_now_s())):
            if self.online() is not None:
                self._beat()
        if failed and outcome is not None and outcome.result is None \
                and self.client is not None:
            hw.forget_network()  # joined but no answer at all: next time a full join
        self.failures.set(self.failures.count + 1 if failed else 0, self.sender.quiet_until)
        hw.led.off()
        hw.feed()
        interval = 0
        if cfg is not None and "pulse" not in board:
            interval = cfg.get("wake_interval_s", _DEFAULT_WAKE_INTERVAL_S)
        interval = min(interval, self.status.interval_s) if interval \
            else self.status.interval_s
        quiet_s = max(0, self.failures.quiet_until - _now_s())
        return power.next_timer_s(interval, self.failures.count, len(self.queue), quiet_s)

    def _beat(self):
        from replenish import ota

        outcome, update = self.heartbeat(_now_s())
        if update is None:
            return
        result = update[0]
        if result == ota.INSTALLED:
            self.hw.reset()
        if result == ota.REFUSED:  # report it now: the offer stops, the old firmware stays
            self.heartbeat(_now_s(), may_update=False)
