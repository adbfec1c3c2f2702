"""Charge from simulated time: each power state's time times its datasheet current.

The currents are hardware/power.py's figures (each cites its datasheet table), so the
budget there and this measurement use one set of numbers; what differs is time, which
here comes from running the firmware on the simulated chip instead of estimates.
"""

from __future__ import annotations

from hardware.power import (BATTERIES, CHIP_FIGURES, HX711_ACTIVE_MA, LED_MA, REGULATORS,
                            SELF_DISCHARGE, USABLE_FRACTION)

LIGHT_SLEEP_MA = 0.8  # ESP32 datasheet v4.x, 'Power Consumption by Power Modes': Light-sleep
# Which current each simulated state draws (device/network.py, socket.py name them).
STATE_CURRENT = {
    "boot": "cpu_active_ma",  # ROM + bootloader + MicroPython init: CPU, radio off
    "off": "cpu_active_ma",  # CPU running, radio off
    "idle": "cpu_active_ma",  # associated, modem sleep between beacons (DTIM)
    "assoc": "wifi_rx_ma",  # scanning, authentication, association, 4-way handshake
    "dhcp": "wifi_rx_ma",  # waiting for the lease with the receiver on (conservative)
    "rx": "wifi_rx_ma",  # listening for an answer / disconnected station
    "tx": "wifi_tx_ma",
    "ap": "wifi_rx_ma",  # setup access point: beacons, always listening
}


def state_ma(chip: str, state: str) -> float:
    if state == "light_sleep":
        return LIGHT_SLEEP_MA
    return CHIP_FIGURES[chip][STATE_CURRENT[state]].value


def run_mas(chip: str, out: dict) -> float:
    """Charge (mA*s) of one run: chip states, the LED, a powered HX711."""
    total = sum(us / 1e6 * state_ma(chip, state) for state, us in out.get("energy", {}).items())
    total += out.get("led_on_us", 0) / 1e6 * LED_MA.value
    total += out.get("hx711_on_us", 0) / 1e6 * HX711_ACTIVE_MA.value
    return total


def sleep_ua(chip: str, board: dict, hx711_powered: bool = False, cell_mv: float = 3700) -> float:
    """Current while in deep sleep: chip, regulator quiescent, battery divider, and an
    HX711 whose SCK was not held high (it powers up again and draws 1.5 mA)."""
    power = board.get("power", {})
    ua = CHIP_FIGURES[chip]["deep_sleep_ua"].value
    regulator = REGULATORS.get(power.get("regulator", ""))
    ua += regulator.value if regulator else 0
    if power.get("divider_ohm"):
        ua += cell_mv / power["divider_ohm"] * 1000
    if hx711_powered:
        ua += HX711_ACTIVE_MA.value * 1000
    return ua


def capacity_mas(board: dict) -> float:
    cell = BATTERIES[board.get("power", {}).get("battery", "li-ion-18650")]
    return cell.value * 3600 * USABLE_FRACTION.value


def self_discharge_mas_per_day(board: dict) -> float:
    cell = BATTERIES[board.get("power", {}).get("battery", "li-ion-18650")]
    return cell.value * 3600 * SELF_DISCHARGE.value / 100 / 30


# Open-circuit voltage of a Li-ion (NMC) cell against state of charge: a typical curve
# (estimate after Battery University BU-501 and the INR18650-35E discharge plot).
_OCV = ((1.0, 4200), (0.9, 4060), (0.8, 3980), (0.7, 3920), (0.6, 3870), (0.5, 3820),
        (0.4, 3790), (0.3, 3760), (0.2, 3730), (0.1, 3670), (0.05, 3500), (0.0, 3000))


def ocv_mv(soc: float) -> int:
    soc = min(1.0, max(0.0, soc))
    for (s_hi, v_hi), (s_lo, v_lo) in zip(_OCV, _OCV[1:]):
        if s_lo <= soc <= s_hi:
            return int(v_lo + (v_hi - v_lo) * (soc - s_lo) / (s_hi - s_lo))
    return _OCV[-1][1]


def life_days(board: dict, chip: str, press_mas: float, presses_per_day: float,
              periodic_mas_per_day: float, sleep_current_ua: float) -> float:
    per_day = (sleep_current_ua / 1000 * 86400 + presses_per_day * press_mas
               + periodic_mas_per_day + self_discharge_mas_per_day(board))
    return capacity_mas(board) / per_day
