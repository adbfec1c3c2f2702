"""ESP32 entry point: one wake = one short cycle, then deep sleep.

wake -> (setup mode | press | measure | count | boot) -> connect -> send (queue first)
-> verified answer -> LED -> deep sleep with the button (ext0) armed and a timer for
sensors, queue retries and status heartbeats. Nothing else runs: no boot event on a
deep-sleep wake, no Wi-Fi when a sensor reading did not change enough. The bundle lives
in /bundle. Before anything else, otaboot picks the firmware slot (a trial after an
update: a watchdog resets it if it hangs or crashes); a heartbeat answered with an
update fetches, verifies and installs it, then resets (docs/fleet.md).
"""

import json
import socket
import struct
import time

import otaboot

BUNDLE = "/bundle"
OTA_ROOT = ""  # the flash root: slots in /ota/b<build>, record /ota/boot.json (docs/fleet.md)
if otaboot.select(OTA_ROOT) == otaboot.TRIAL:
    import machine  # noqa: PLC0415  (entry point)

    # A trial firmware that crashes into the REPL or hangs is reset, counted, rolled back.
    machine.WDT(timeout=60000)

from hw import esp32  # noqa: E402  (after otaboot.select: from the running slot)
from replenish import identity, power, protocol  # noqa: E402
from replenish import sensor as sensor_mod  # noqa: E402
from replenish.button import Button  # noqa: E402
from replenish.client import Client  # noqa: E402
from replenish.counter import SeqCounter  # noqa: E402
from replenish.queue import Queue  # noqa: E402
from replenish.sender import Sender  # noqa: E402
from replenish.status import DEFAULT_INTERVAL_S, Status  # noqa: E402

_WIFI_TIMEOUT_MS = 15000
_SETUP_TIMEOUT_MS = 600000
_SETUP_PORT = 80
_RTC_QUEUE = 0  # RTC memory cells (hw/esp32.Rtc)
_RTC_SENSOR = 1
_RTC_FAILURES = 2
_RTC_STATUS = 3


def wifi_credentials(storage):
    raw = storage.read("wifi.json")
    try:
        wifi = json.loads(raw) if raw else None
    except ValueError:
        wifi = None
    return wifi if isinstance(wifi, dict) and wifi.get("ssid") else None


def setup_mode(ident, storage, led):
    from replenish import setup

    if not ident.setup_secret:
        led.show("error")  # old bundle without a label secret: refuse, never open
        return
    ap = esp32.AccessPoint("Replenish-" + ident.device_hex[-4:], ident.setup_secret)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(socket.getaddrinfo(ap.address(), _SETUP_PORT)[0][-1])
    listener.listen(1)
    led.show("setup")

    def save(ssid, password):
        storage.write("wifi.json", json.dumps({"ssid": ssid, "password": password}))

    try:
        result, _ssid = setup.SetupServer(listener, esp32.Clock(), ident.setup_secret, save,
                                          _SETUP_TIMEOUT_MS).serve()
    finally:
        listener.close()
        ap.close()
    led.off()
    if result == setup.SAVED:
        esp32.reset()  # reboot into normal mode


class Failures:
    """Failed wakes in a row (for Wi-Fi backoff) and the time until which an overloaded
    backend asked for quiet (5.03 Max-Age), in RTC memory (no flash wear)."""

    def __init__(self, rtc):
        self._rtc = rtc
        raw = rtc.read()
        self.count, self.quiet_until = (struct.unpack(">II", raw) if raw and len(raw) == 8
                                        else (0, 0))

    def set(self, count, quiet_until=0):
        quiet_until = int(quiet_until)
        if (count, quiet_until) != (self.count, self.quiet_until):
            self.count, self.quiet_until = count, quiet_until
            self._rtc.write(struct.pack(">II", count, quiet_until))


def main():
    wdt = esp32.Watchdog()
    ident = identity.load(BUNDLE)
    ident.fw = otaboot.running(OTA_ROOT, ident.fw)[0]
    board = ident.board or {}
    status = Status(esp32.Rtc(_RTC_STATUS), board.get("status_interval_s", DEFAULT_INTERVAL_S))
    status.wake()
    storage = esp32.FlashStorage(BUNDLE + "/state")
    led = esp32.Led(board["led"])
    button = esp32.ButtonInput(board["button"])
    battery = esp32.Battery(board["battery"]) if "battery" in board else None
    cfg = board.get("sensor")
    wake = esp32.wake_reason()
    held_ms = button.held_ms(power.LONG_PRESS_MS) if wake == power.WAKE_BUTTON else 0
    wifi = wifi_credentials(storage)
    queue = Queue(storage, rtc=esp32.Rtc(_RTC_QUEUE))
    failures = Failures(esp32.Rtc(_RTC_FAILURES))
    todo = power.action(wake, wifi is not None, held_ms, cfg is not None, len(queue))
    if todo == power.ACTION_SETUP:
        setup_mode(ident, storage, led)
        todo = None
    state = sensor_mod.State(esp32.Rtc(_RTC_SENSOR)) if cfg else None
    remaining = None
    if todo == power.ACTION_PRESS and state is not None and cfg is not None \
            and cfg.get("kind") == "cycle_counter":
        state.cycles = 0  # a press on a cycle counter means "refilled"
        state.save()
        todo = power.ACTION_MEASURE
    if todo == power.ACTION_COUNT and state is not None:
        state.cycles += 1  # one debounced pulse woke us: one appliance cycle
        state.save()
        todo = power.ACTION_MEASURE
    if todo == power.ACTION_MEASURE and cfg is not None and state is not None:
        remaining = measure(board, cfg, state, storage)
        if remaining is None:
            todo = None
    root = OTA_ROOT
    report = otaboot.pending_report(root)
    beat = wifi is not None and (report is not None or status.due(time.time()))
    if (todo is not None or beat) and wifi is not None:
        wdt.feed()
        station = esp32.Wifi()
        client = None  # no Wi-Fi: the event goes straight to the queue
        if station.connect(wifi["ssid"], wifi.get("password", ""), _WIFI_TIMEOUT_MS):
            addr = socket.getaddrinfo(ident.coap_host, ident.coap_port)[0][-1]
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            client = Client(sock, addr)
        sender = Sender(ident, SeqCounter(storage), client or _Offline(), queue, battery, led)
        sender.quiet_until = failures.quiet_until
        outcome = run(todo, ident, sender, led, cfg, state, remaining)
        if beat and client is not None:
            wdt.feed()
            heartbeat(root, ident, sender, client, status, station.rssi(), report, battery, wdt)
        failures.set(0 if outcome is None or not outcome.queued else failures.count + 1,
                     sender.quiet_until)
    led.off()
    wdt.feed()
    button.wake_source()
    if "pulse" in board:
        esp32.arm_pulse_wake(board["pulse"]["pin"], board["pulse"].get("active_low", True))
    interval = cfg.get("wake_interval_s", 3600) if cfg and "pulse" not in board else 0
    interval = min(interval, status.interval_s) if interval else status.interval_s
    quiet_s = max(0, failures.quiet_until - time.time())
    esp32.deep_sleep(power.next_timer_s(interval, failures.count, len(queue), quiet_s))


def heartbeat(root, ident, sender, client, status, rssi, report, battery, wdt):
    """Status heartbeat; an offered update is fetched, verified and installed, then the
    device resets into it (otaboot runs it on trial until it checks in)."""
    outcome = status.send(sender, time.time(), rssi, report)
    if not outcome.authenticated:
        return
    if report is not None:
        otaboot.checked_in(root)
    if outcome.update is None:
        return
    from replenish import ota

    wdt.feed()
    result, _detail = ota.Updater(root, client, ident, battery, tick=wdt.feed).run(
        outcome.update)
    if result == ota.INSTALLED:
        esp32.reset()
    if result == ota.REFUSED:  # report it now: the offer stops, the old firmware stays
        if status.send(sender, time.time(), rssi, otaboot.pending_report(root)).authenticated:
            otaboot.checked_in(root)


class _Offline:
    def request(self, code, path, payload=b"", content_format=None):
        raise OSError("no wifi")


def measure(board, cfg, state, storage):
    """Remaining amount now, or None when this wake should not report."""
    policy = sensor_mod.Policy(cfg["capacity"], cfg.get("hysteresis", 0),
                               cfg.get("heartbeat_s", 86400))
    if cfg.get("kind") == "cycle_counter":
        amount = sensor_mod.cycles_remaining(cfg["capacity"], cfg.get("dose", 1), state.cycles)
    else:
        from replenish.hx711 import HX711

        hx = board["hx711"]
        clock = esp32.Clock()
        import machine  # noqa: PLC0415  (entry point: pins are created here only)

        adc = HX711(machine.Pin(hx["dout_pin"], machine.Pin.IN),
                    machine.Pin(hx["sck_pin"], machine.Pin.OUT), clock, hx.get("gain", 128))
        cal = storage.read("cal")
        if cal:
            offset, per_unit = cal.decode().split()
            adc.offset, adc.counts_per_unit = int(offset), float(per_unit)
        adc.power_up()
        amount = esp32.critical(adc.amount)
        adc.power_down()
    remaining = policy.clamp(amount)
    if policy.decide(remaining, time.time(), state.last, state.last_s) is None:
        return None
    return remaining


def run(todo, ident, sender, led, cfg, state, remaining):
    if todo == power.ACTION_PRESS:
        return Button(sender, led).press(0)
    if todo == power.ACTION_BOOT:
        return Button(sender, led).boot()
    if todo == power.ACTION_MEASURE and state is not None:
        policy = sensor_mod.Policy(cfg["capacity"], cfg.get("hysteresis", 0),
                                   cfg.get("heartbeat_s", 86400))
        return sensor_mod.Sensor(sender, led, policy, state).wake(remaining, time.time())[1]
    if todo == power.ACTION_RETRY:
        done, failure = sender.flush()
        return failure
    return None


main()
