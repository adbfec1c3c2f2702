"""Power-aware cycle on MicroPython: what each wake does, backoff, and the measured figures."""

from devtools import firmware_bench
from devtools.mpy import run_snippet


def test_wake_actions_and_backoff(tmp_path):
    out = run_snippet(r"""
from replenish import power as p
print(p.action(p.WAKE_POWER_ON, False, 0, False, 0))   # first boot, no Wi-Fi: setup
print(p.action(p.WAKE_BUTTON, True, 6000, False, 0))   # long press: setup
print(p.action(p.WAKE_BUTTON, True, 120, False, 0))
print(p.action(p.WAKE_POWER_ON, True, 0, False, 0))
print(p.action(p.WAKE_TIMER, True, 0, True, 0))
print(p.action(p.WAKE_PULSE, True, 0, True, 0))
print(p.action(p.WAKE_TIMER, True, 0, False, 2))       # button with queued events: retry
print(p.action(p.WAKE_TIMER, True, 0, False, 0))       # nothing to do at all
print([p.backoff_s(n) for n in (0, 1, 2, 3, 8, 20)])
print(p.next_timer_s(0, 0, 0), p.next_timer_s(0, 2, 1), p.next_timer_s(900, 9, 1))
""", tmp_path).stdout.split("\n")
    assert out[:10] == ["setup", "setup", "press", "boot", "measure", "count", "retry", "None",
                        "[0, 30, 60, 120, 3600, 3600]", "None 60 900"]


def test_bench_figures_printed_and_within_budget():
    figures = firmware_bench.measure(64)
    assert figures["presses"] == 64
    # one queue page per press (written before the network is touched, so no reset or
    # power cut during the send can lose it) and one counter reservation per 32 presses
    assert figures["flash_writes_per_press_online"] <= 1 + 1 / 32 + 1e-9
    # offline: one queue page per press (plus the counter's 1/32); the flush head goes
    # to RTC memory
    assert figures["flash_writes_per_press_offline"] <= 1 + 1 / 32 + 1e-9
    assert figures["flash_writes_per_flush"] == 0
    assert 0 < figures["peak_heap_bytes_per_send"] < 16384  # no big allocations per send
    assert figures["firmware_us_per_press"] > 0
