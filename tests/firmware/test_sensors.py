"""HX711 driver, cycle counter and the sensor policy on MicroPython, on simulated silicon."""

from devtools.esp32sim.harness import DEVICE_DIR
from devtools.mpy import FIRMWARE, run_snippet

SIM = r"""
from hx711_model import Clock, Hx711 as SimHx711, Pin
from replenish.hx711 import HX711, NotReady
"""


def run(tmp_path, body):
    return run_snippet(SIM + body, tmp_path,
                       micropypath=f"{FIRMWARE}:{DEVICE_DIR}").stdout.split()


def test_hx711_reads_signed_values_with_datasheet_timing(tmp_path):
    out = run(tmp_path, r"""
values = [123456, -1, -8388608, 8388607, 0, 5000]
seen_gain = []
def source(gain):
    seen_gain.append(gain)
    return values[len(seen_gain) - 1]
clock = Clock()
chip = SimHx711(clock, source)
adc = HX711(chip.dout_pin, chip.sck_pin, clock, gain=64)
got = [adc.read_raw() for _ in values]
print(got == values, chip.violations, chip.conversions, chip.power_downs)
print(seen_gain[0], seen_gain[1])        # first conversion at 128, then the gain asked for
print(clock.now_us >= 400000 + 5 * 100000)  # waited for settling and 10 SPS
""")
    assert out == ["True", "0", "6", "0", "128", "64", "True"]


def test_hx711_power_down_and_not_ready(tmp_path):
    out = run(tmp_path, r"""
clock = Clock()
chip = SimHx711(clock, lambda g: 42)
adc = HX711(chip.dout_pin, chip.sck_pin, clock)
print(adc.read_raw())
adc.power_down()                          # SCK high > 60 us
print(chip.dout_pin.value(), chip.power_downs == 0)
adc.power_up()
print(chip.power_downs, adc.read_raw(), chip.violations)
dead = HX711(Pin(clock, 1), Pin(clock, 0), clock, ready_timeout_ms=50)
try:
    dead.read_raw()
except NotReady:
    print("not-ready")
""")
    assert out == ["42", "1", "True", "1", "42", "0", "not-ready"]


def test_hx711_tare_calibration_and_median_against_knocks(tmp_path):
    out = run(tmp_path, r"""
import random
random.seed(7)
OFFSET, PER_GRAM = 84000, 420.5
load = [0.0]
n = [0]
def source(gain):
    n[0] += 1
    v = OFFSET + load[0] * PER_GRAM + random.getrandbits(8) - 128   # noise +-128 counts
    if n[0] % 5 == 0:
        v += 2000000 if n[0] % 10 else -3000000                    # a knock: wild spike
    return int(v)
clock = Clock()
chip = SimHx711(clock, source)
adc = HX711(chip.dout_pin, chip.sck_pin, clock)
adc.tare()
load[0] = 500.0
adc.calibrate(500)
load[0] = 1234.0
grams = adc.amount()
print(abs(adc.offset - OFFSET) < 200, abs(adc.counts_per_unit - PER_GRAM) < 2,
      abs(grams - 1234) < 3, chip.violations)
""")
    assert out == ["True", "True", "True", "0"]


def test_cycle_counter_debounces(tmp_path):
    out = run(tmp_path, r"""
from replenish.pulses import PulseCounter
clock = Clock()
script = []
t = 10000
for cycle in range(5):                    # active low pulses of 200 ms with bounce
    for b in range(4):
        script.append((t + b * 2000, 0))
        script.append((t + b * 2000 + 1000, 1))
    script.append((t + 8000, 0))
    script.append((t + 208000, 1))
    script.append((t + 208500, 0))        # a 1 ms glitch while released
    script.append((t + 209500, 1))
    t += 1000000
pin = Pin(clock, 1, script)
counter = PulseCounter(pin, clock, active_low=True, debounce_ms=30)
while clock.now_us < t:
    counter.poll()
    clock.sleep_ms(1)
print(counter.count)
""")
    assert out == ["5"]


def test_level_policy_hysteresis_heartbeat_refill(tmp_path):
    out = run_snippet(r"""
from replenish.sensor import Policy, cycles_remaining
p = Policy(capacity=1000, hysteresis=20, heartbeat_s=3600)
print(p.decide(900, 0, None, 0))
print(p.decide(885, 60, 900, 0))         # within hysteresis: nothing
print(p.decide(870, 60, 900, 0))
print(p.decide(990, 60, 870, 0))
print(p.decide(870, 3600, 870, 0))
print(p.clamp(-5.2), p.clamp(1500), p.clamp(12.6))
print(cycles_remaining(40, 3, 5), cycles_remaining(40, 3, 20))
""", tmp_path).stdout.split()
    assert out == ["first", "None", "change", "refill", "heartbeat", "0", "1000", "13",
                   "25", "0"]


def test_interrupts_are_off_for_one_shift_at_a_time(tmp_path):
    # The ESP32 layer passes critical() = machine.disable_irq/enable_irq around fn. ESP-IDF's
    # interrupt watchdog fires after 300 ms (CONFIG_ESP_INT_WDT_TIMEOUT_MS); a median of
    # seven conversions at 10 SPS takes ~700 ms, so only one 27-pulse shift may be inside.
    out = run(tmp_path, r"""
clock = Clock()
chip = SimHx711(clock, lambda g: 84000)
spans = []
def critical(fn):
    start = clock.now_us
    try:
        return fn()
    finally:
        spans.append(clock.now_us - start)
adc = HX711(chip.dout_pin, chip.sck_pin, clock, critical=critical)
start = clock.now_us
adc.amount()
print(len(spans), max(spans), clock.now_us - start, chip.violations)
""")
    count, longest_us, total_us, violations = map(int, out)
    assert count == 7 and violations == 0
    assert longest_us < 1000  # one shift: well under a millisecond
    assert total_us > 300000  # the whole median would have tripped the watchdog
