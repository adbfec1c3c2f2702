"""Power policy for a battery device: what a wake does and when the next one comes.

Portable and pure, so the unix tests cover the decisions the ESP32 entry point makes.
"""

from micropython import const

WAKE_POWER_ON = "power_on"  # first start, reset, brown-out: send a boot event
WAKE_BUTTON = "button"
WAKE_TIMER = "timer"
WAKE_PULSE = "pulse"

ACTION_SETUP = "setup"
ACTION_PRESS = "press"
ACTION_MEASURE = "measure"
ACTION_COUNT = "count"
ACTION_BOOT = "boot"
ACTION_RETRY = "retry"  # timer wake with events queued: try to deliver them

_BACKOFF_BASE_S = const(30)
_BACKOFF_MAX_S = const(3600)
LONG_PRESS_MS = const(5000)
LOW_BATTERY_MV = const(2400)  # 2 x AAA / LiFePO4 knee; below: warn after each answer


def action(wake, has_wifi, held_ms, has_sensor, queued):
    """The one thing this wake does."""
    if not has_wifi or (wake == WAKE_BUTTON and held_ms >= LONG_PRESS_MS):
        return ACTION_SETUP
    if wake == WAKE_BUTTON:
        return ACTION_PRESS
    if wake == WAKE_PULSE:
        return ACTION_COUNT
    if wake == WAKE_TIMER:
        return ACTION_MEASURE if has_sensor else ACTION_RETRY if queued else None
    return ACTION_BOOT


def backoff_s(failures):
    """Seconds before retrying Wi-Fi/backend after `failures` failed wakes in a row."""
    if failures <= 0:
        return 0
    delay = _BACKOFF_BASE_S << min(failures - 1, 8)
    return delay if delay < _BACKOFF_MAX_S else _BACKOFF_MAX_S


def next_timer_s(wake_interval_s, failures, queued, quiet_s=0):
    """Timer for the next deep sleep: None = button wake only. Queued events are
    retried after the Wi-Fi backoff, and never before an overloaded backend's Max-Age
    (`quiet_s`) has passed."""
    retry = max(backoff_s(failures), quiet_s) if queued else 0
    if wake_interval_s and retry:
        return min(wake_interval_s, retry)
    return wake_interval_s or retry or None
