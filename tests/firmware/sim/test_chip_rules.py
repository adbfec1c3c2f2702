"""What outlives the CPU on a simulated chip: RTC memory and time, wake sources and the
reason the next boot reports, held pins, both watchdogs, and the flash under power cuts."""

import pytest

from devtools.esp32sim.device import chips
from devtools.esp32sim.harness import US, Script, snippet_device

COUNT_WAKES = """
import machine, time
rtc = machine.RTC()
n = rtc.memory()[0] + 1 if rtc.memory() else 1
rtc.memory(bytes([n]))
print("wake", n, "cause", machine.reset_cause(), "reason", machine.wake_reason(),
      "time", time.time())
machine.deepsleep(60000)
"""


def test_rtc_memory_survives_deep_sleep_and_reset_not_a_power_loss(tmp_path):
    device = snippet_device("esp32c3", COUNT_WAKES, tmp_path)
    runs = [device.boot() for _ in range(3)]
    assert [r.end for r in runs] == ["deepsleep"] * 3
    assert "wake 3 cause 4 reason 4 time 120" in runs[2].stdout  # timer wake, RTC kept time
    device.reset_cause = chips.HARD_RESET  # machine.reset(): RTC_NOINIT memory is kept
    device.wake_reason = chips.WAKE_UNDEFINED
    assert "wake 4 cause 2 reason 0" in device.boot().stdout
    device.power_loss()
    assert "wake 1 cause 1 reason 0 time 0" in device.boot().stdout


def test_a_watchdog_reset_keeps_rtc_memory(tmp_path):
    source = """
import machine, time
mem = machine.RTC().memory()
print("cause", machine.reset_cause(), "mem", mem)
machine.RTC().memory(b"kept")
machine.WDT(timeout=2000)
while True:
    time.sleep_ms(100)  # never fed
"""
    device = snippet_device("esp32", source, tmp_path)
    first = device.boot()
    assert first.end == "task_wdt"
    assert first.awake_us < 3 * US  # fired 2 s after arming, on the virtual clock
    assert "cause 3 mem b'kept'" in device.boot().stdout  # machine.WDT_RESET


def test_interrupts_off_past_300_ms_trip_the_interrupt_watchdog(tmp_path):
    source = """
import machine, time
state = machine.disable_irq()
time.sleep_us(%d)
machine.enable_irq(state)
print("survived")
machine.deepsleep()
"""
    short = snippet_device("esp32", source % 200000, tmp_path / "a").boot()
    assert short.end == "deepsleep" and "survived" in short.stdout
    device = snippet_device("esp32", source % 400000, tmp_path / "b")
    long = device.boot()
    assert long.end == "int_wdt" and "survived" not in long.stdout
    assert device.reset_cause == chips.WDT_RESET


BUTTON = {"button": {"pin": 3, "active_low": True}}
ARM = """
import esp32, machine
pin = machine.Pin(3, machine.Pin.IN, machine.Pin.PULL_UP)
print("cause", machine.reset_cause(), "reason", machine.wake_reason(), "pins",
      machine.wake_pins())
%s
machine.deepsleep(3600000)
"""


@pytest.mark.parametrize("chip, arm, reason, pins", [
    ("esp32", "esp32.wake_on_ext0(pin, esp32.WAKEUP_ALL_LOW)", 2, ()),
    ("esp32s3", "esp32.wake_on_ext1([pin], esp32.WAKEUP_ALL_LOW)", 3, (3,)),
    ("esp32c6", "esp32.wake_on_ext1([pin], esp32.WAKEUP_ALL_LOW)", 3, (3,)),
    ("esp32c3", "esp32.wake_on_gpio([pin], esp32.WAKEUP_ALL_LOW)", 7, (3,)),
])
def test_a_button_wake_reports_the_chips_wake_reason(chip, arm, reason, pins, tmp_path):
    board = {"button": {"pin": 4 if chip == "esp32" else 3, "active_low": True}}
    source = ARM.replace("Pin(3", "Pin(%d" % board["button"]["pin"]) % arm
    script = Script()
    script.press(100)
    device = snippet_device(chip, source, tmp_path, board=board, script=script)
    device.boot()
    woke = device.boot()
    assert device.runs[0].end == "deepsleep"
    assert woke.start_us == 100 * US  # the press, not the hour-long timer
    expected_pins = tuple(board["button"]["pin"] for _ in pins)
    assert f"cause 4 reason {reason} pins {expected_pins}" in woke.stdout


def test_a_pin_holds_its_level_through_deep_sleep_only_when_asked(tmp_path):
    source = """
import esp32, machine
machine.Pin(33, machine.Pin.OUT, value=1, hold=True)  # an RTC IO: holds by itself
machine.Pin(23, machine.Pin.OUT, value=1, hold=True)  # digital pad: needs the global hold
machine.Pin(22, machine.Pin.OUT, value=1)  # no hold: floats in deep sleep
%s
machine.deepsleep(1000)
"""
    alone = snippet_device("esp32", source % "", tmp_path / "a")
    alone.boot()
    assert alone.sleeps[-1]["held"] == {"33": 1}
    everything = snippet_device("esp32", source % "esp32.gpio_deep_sleep_hold(True)",
                                tmp_path / "b", idf=(5, 5, 1))  # the IDF that has it
    everything.boot()
    assert everything.sleeps[-1]["held"] == {"33": 1, "23": 1}


def test_waits_cost_virtual_time_and_boot_time_counts(tmp_path):
    source = """
import time
print("start", time.ticks_ms())
time.sleep(3600)
import machine
machine.deepsleep(1000)
"""
    run = snippet_device("esp32c3", source, tmp_path).boot()
    boot_ms = chips.CHIPS["esp32c3"]["boot_ms"] + chips.CHIPS["esp32c3"]["power_on_extra_ms"]
    assert f"start {boot_ms}" in run.stdout
    assert run.awake_us >= 3600 * US


WRITE = """
import os
with open("/data.bin", "wb") as f:
    f.write(b"%s" * 100)
os.rename("/data.bin", "/final.bin")
import machine
machine.deepsleep(1000)
"""


def test_a_power_cut_tears_a_write_so_only_a_checksum_can_tell(tmp_path):
    device = snippet_device("esp32", WRITE % "A", tmp_path)
    device.boot()
    (device.flash / "main.py").write_text(WRITE % "B")
    # ops: 1 open, 2 write, 3 rename: cut inside the write, 30 % of it on flash
    cut = device.boot(cut_at_op=2, tear_frac=0.3)
    assert cut.end == "power_cut"
    assert (device.flash / "data.bin").read_bytes() == b"B" * 30  # torn, no error
    assert (device.flash / "final.bin").read_bytes() == b"A" * 100
    assert device.reset_cause == chips.PWRON_RESET and device.rtc_mem == ""


def test_littlefs_keeps_the_old_file_when_a_write_is_cut(tmp_path):
    device = snippet_device("esp32", WRITE % "A", tmp_path, flash_model="lfs")
    device.boot()
    (device.flash / "data.bin").write_bytes(b"old")
    (device.flash / "main.py").write_text(WRITE % "B")
    assert device.boot(cut_at_op=2).end == "power_cut"
    assert (device.flash / "data.bin").read_bytes() == b"old"  # committed only on close
    assert not list(device.flash.glob("*.~new"))


def test_a_power_cut_at_a_moment(tmp_path):
    source = "import time\ntime.sleep(10)\nprint('never')\n"
    device = snippet_device("esp32s3", source, tmp_path)
    run = device.boot(cut_at_us=5 * US)
    assert run.end == "power_cut" and run.out["now_us"] == 5 * US
    assert "never" not in run.stdout


def test_the_battery_reads_through_its_divider_on_an_adc1_pin(tmp_path):
    source = """
import machine
adc = machine.ADC(machine.Pin(1), atten=machine.ADC.ATTN_11DB)
print("uv", adc.read_uv())
machine.deepsleep(1000)
"""
    board = {"battery": {"adc_pin": 1, "divider_ratio": 2.0}}
    device = snippet_device("esp32c3", source, tmp_path, board=board,
                            battery_mv=lambda d: 3700)
    assert "uv 1850000" in device.boot().stdout


def test_taking_a_flash_pin_crashes_the_esp32(tmp_path):
    source = "import machine\nmachine.Pin(7, machine.Pin.OUT)\nprint('alive')\n"
    device = snippet_device("esp32", source, tmp_path)
    run = device.boot()
    assert run.end == "panic" and "alive" not in run.stdout
    assert device.reset_cause == chips.HARD_RESET  # ESP_RST_PANIC
    c6 = snippet_device("esp32c6", source, tmp_path / "c6").boot()  # an ordinary pin there
    assert "alive" in c6.stdout
